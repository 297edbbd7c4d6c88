"""Docker's restart decision and back-off, as a pure function."""

from __future__ import annotations

import pytest

from berth.engine.model import RestartPolicy
from berth.engine.restart import INITIAL_DELAY, MAX_DELAY, decide


@pytest.mark.parametrize(("name", "code", "manual", "count", "expected"), [
    ("no", 1, False, 0, False),
    ("", 1, False, 0, False),
    ("always", 0, False, 0, True),
    ("always", 0, True, 0, False),
    ("unless-stopped", 0, False, 5, True),
    ("unless-stopped", 1, True, 0, False),
    ("on-failure", 0, False, 0, False),
    ("on-failure", 2, False, 0, True),
])
def test_decision(name, code, manual, count, expected):
    assert decide(RestartPolicy(name), code, manual, count, 0.0, 1.0).restart is expected


def test_on_failure_retry_budget():
    policy = RestartPolicy("on-failure", 2)
    assert decide(policy, 1, False, 1, 0.0, 0.0).restart
    assert not decide(policy, 1, False, 2, 0.0, 0.0).restart
    assert decide(RestartPolicy("on-failure", 0), 1, False, 99, 0.0, 0.0).restart


def test_back_off_doubles_caps_and_resets():
    delay, seen = 0.0, []
    for _ in range(12):
        delay = decide(RestartPolicy("always"), 0, False, 0, delay, 0.5).delay
        seen.append(delay)
    assert seen[:3] == [INITIAL_DELAY, 2 * INITIAL_DELAY, 4 * INITIAL_DELAY]
    assert seen[-1] == MAX_DELAY
    # a run of 10 s or more starts the back-off over
    assert decide(RestartPolicy("always"), 0, False, 0, MAX_DELAY, 10.0).delay == INITIAL_DELAY
