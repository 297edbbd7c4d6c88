"""Random JSON never crashes create-body decoding: it decodes, or raises InvalidArgument.

Bodies are built from Docker's own field names so examples reach nested decoders
(HostConfig, RestartPolicy, Ulimits, PortBindings, ...) rather than stopping at the top.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.api.wire_containers import parse_create_body
from berth.errors import InvalidArgument

FIELDS = (
    "AttachStderr AttachStdin AttachStdout AutoRemove Binds CapAdd CapDrop Cmd ConsoleSize "
    "CpuPeriod CpuQuota CpuShares CpusetCpus CpusetMems Devices Dns DnsOptions DnsSearch "
    "Domainname Entrypoint Env ExposedPorts ExtraHosts GroupAdd Hard Healthcheck HostConfig "
    "HostIp HostPort Hostname Image Init Interval IpcMode Labels LogConfig MacAddress "
    "MaximumRetryCount Memory MemoryReservation MemorySwap Name NanoCpus NetworkDisabled "
    "NetworkMode OomKillDisable OomScoreAdj OpenStdin PidMode PidsLimit PortBindings Privileged "
    "PublishAllPorts ReadonlyRootfs RestartPolicy Retries Runtime SecurityOpt ShmSize Soft "
    "StartPeriod StdinOnce StopSignal StopTimeout Sysctls Test Timeout Tmpfs Tty Type UTSMode "
    "Ulimits User Volumes VolumesFrom WorkingDir PathOnHost PathInContainer CgroupPermissions "
    "80/tcp NetworkingConfig EndpointsConfig"
).split()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["busybox", "always", "on-failure", "no", "host", "../x", "\x00", "a:b:c",
                     "nofile=1:2", "seccomp=unconfined", "/dev/null"]),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"Image": st.one_of(st.just("busybox"), scalars)},
                          optional={f: json_values for f in FIELDS[:40] if f != "Image"}),
    st.fixed_dictionaries(
        {"Image": st.just("busybox"),
         "HostConfig": st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)}),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_create_body_decoding_only_raises_invalid_argument(body):
    try:
        parse_create_body(body)
    except InvalidArgument:
        pass
