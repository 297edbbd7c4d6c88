"""Config-only steps and their history lines (pure: no daemon)."""

from __future__ import annotations

import pytest

from berth.build.config_steps import apply_config_step, run_created_by, workdir_path
from berth.build.instructions import parse_instruction
from berth.oci.image import ImageConfig

BASE = ImageConfig(env=("PATH=/bin",), cmd=("sh",))


@pytest.mark.parametrize(("line", "created_by"), [
    ('CMD ["sh"]', '/bin/sh -c #(nop)  CMD ["sh"]'),
    ("CMD echo hi", '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]'),
    ('ENTRYPOINT ["a", "b c"]', '/bin/sh -c #(nop)  ENTRYPOINT ["a" "b c"]'),
    ("ENV A=1 B=2", "/bin/sh -c #(nop)  ENV A=1 B=2"),
    ("LABEL a=b", "/bin/sh -c #(nop)  LABEL a=b"),
    ("EXPOSE 80 53/udp", "/bin/sh -c #(nop)  EXPOSE 80 53/udp"),
    ("VOLUME /a /b", "/bin/sh -c #(nop)  VOLUME [/a /b]"),
    ("USER app:app", "/bin/sh -c #(nop)  USER app:app"),
    ("STOPSIGNAL SIGINT", "/bin/sh -c #(nop)  STOPSIGNAL SIGINT"),
    ('SHELL ["/bin/ash", "-c"]', "/bin/sh -c #(nop)  SHELL [/bin/ash -c]"),
    ("ARG X=1", "/bin/sh -c #(nop)  ARG X=1"),
    ("ONBUILD run echo x", "/bin/sh -c #(nop)  ONBUILD RUN echo x"),
    ("HEALTHCHECK --interval=1m30s --retries=3 CMD true",
     """/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "true"] "1m30s" "0s" "0s" '\\x03'}"""),
])
def test_history_lines(line, created_by):
    change = apply_config_step(parse_instruction(line), BASE)
    assert change is not None
    assert change.created_by == created_by


def test_config_effects():
    config = BASE
    for line in ("ENV A=1", "LABEL k=v", "EXPOSE 8000-8001/udp 80", "VOLUME /data",
                 "USER 1000", 'SHELL ["/bin/ash", "-c"]', "CMD run me", "STOPSIGNAL 9"):
        change = apply_config_step(parse_instruction(line), config)
        assert change is not None
        config = change.config
    assert config.env == ("PATH=/bin", "A=1")
    assert config.labels == {"k": "v"}
    assert config.exposed_ports == ("80/tcp", "8000/udp", "8001/udp")
    assert config.volumes == ("/data",)
    assert config.user == "1000"
    assert config.cmd == ("/bin/ash", "-c", "run me")
    assert config.stop_signal == "9"


def test_run_and_workdir_helpers():
    assert run_created_by(("/bin/sh", "-c", "make"), {}) == "/bin/sh -c make"
    assert run_created_by(("/bin/sh", "-c", "make"), {"B": "2", "A": "1"}) == \
        "|2 A=1 B=2 /bin/sh -c make"
    assert workdir_path("/a", "b/../c") == "/a/c"
    assert workdir_path("/a", "/x//y") == "/x//y"
    assert workdir_path("", "rel") == "/rel"
    assert apply_config_step(parse_instruction("RUN true"), BASE) is None
