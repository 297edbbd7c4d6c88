"""Independent stages run at the same time; the transcript still reads in file order."""

from __future__ import annotations

import re
import secrets

# Each stage leaves a mark in a shared cache mount and waits (up to 20 s) for the other's:
# both RUNs can only succeed when the two stages run at the same time.
RENDEZVOUS = """\
FROM busybox AS left
RUN --mount=type=cache,target=/meet,id={id},sharing=shared \\
    touch /meet/left && i=0 && while [ ! -e /meet/right ] && [ $i -lt 200 ]; do \\
    sleep 0.1; i=$((i+1)); done && [ -e /meet/right ] && echo left-met > /left.txt

FROM busybox AS right
RUN --mount=type=cache,target=/meet,id={id},sharing=shared \\
    touch /meet/right && i=0 && while [ ! -e /meet/left ] && [ $i -lt 200 ]; do \\
    sleep 0.1; i=$((i+1)); done && [ -e /meet/left ] && echo right-met > /right.txt

FROM busybox
COPY --from=left /left.txt /
COPY --from=right /right.txt /
CMD ["cat", "/left.txt", "/right.txt"]
"""


def test_independent_stages_run_concurrently_and_print_in_order(builder):
    tag, out = builder.build_ok(RENDEZVOUS.format(id=secrets.token_hex(4)))
    assert builder.run(tag) == "left-met\nright-met\n"
    steps = [int(n) for n in re.findall(r"^Step (\d+)/8 :", out, re.M)]
    assert steps == list(range(1, 9)), out  # one transcript, stage after stage
    left_run = out.index("Step 2/8 : RUN")
    assert out.index("Step 3/8 : FROM busybox AS right") > left_run


def test_a_failing_stage_stops_the_build_with_its_own_error(builder, daemon):
    before = daemon.out("ps", "-aq").split()
    ctx = builder.context("""\
FROM busybox AS slow
RUN sleep 2
RUN echo slow-second-step

FROM busybox AS broken
RUN echo about to fail && exit 7

FROM busybox
COPY --from=slow /etc/hostname /a
COPY --from=broken /etc/hostname /b
""")
    proc = builder.build(ctx, tag=builder.tag())
    out = proc.stdout.decode()
    assert proc.returncode == 7, out + proc.stderr.decode()
    assert "The command '/bin/sh -c echo about to fail && exit 7' returned a non-zero code: 7" \
        in proc.stderr.decode()
    assert "about to fail" in out
    # the slow stage stopped before its next step; nothing of the last stage ran
    assert "slow-second-step" not in out
    assert "COPY --from=slow" not in out
    assert daemon.out("ps", "-aq").split() == before


def test_copy_from_a_later_stage_is_refused(builder):
    ctx = builder.context("""\
FROM busybox AS first
COPY --from=second /etc/hostname /x

FROM busybox AS second
RUN true
""")
    proc = builder.build(ctx, "--target", "first", tag=builder.tag())
    assert proc.returncode != 0
    assert "invalid from flag value second" in proc.stderr.decode()
