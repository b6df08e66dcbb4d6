"""fairpool.leaks: the shells' side of leak detection (capture, exemption, formatting)."""

from __future__ import annotations

import logging
import sys
from types import FrameType

import pytest

from fairpool import leaks
from fairpool.config import make_config
from fairpool.core import PoolCore

from .helpers import FakeConn, borrow


def here() -> FrameType:
    return sys._getframe(1)


def test_borrower_is_the_callers_stack_most_recent_call_last() -> None:
    line = sys._getframe().f_lineno + 1
    stack = leaks.borrower(sys._getframe())
    assert stack is not None and 1 < len(stack) <= leaks.STACK_LIMIT
    text = leaks.format_borrower(stack)
    last, source = text.splitlines()[-2:]
    assert f'test_leaks.py", line {line}, in test_borrower_is_the_callers' in last
    assert source.strip() == "stack = leaks.borrower(sys._getframe())"
    assert leaks.format_borrower(None) == "(stack not captured)"


def test_redis_py_command_names_and_decorated_callers_are_exempt() -> None:
    for name in ("pubsub", "MONITOR", "_"):
        assert leaks.borrower(sys._getframe(), name) is None
    assert leaks.borrower(sys._getframe(), "GET") is not None

    @leaks.exempt_caller
    def long_lived() -> object:
        return leaks.borrower(here())  # two frames below: found

    assert long_lived() is None
    with pytest.raises(TypeError, match="needs a Python function"):
        leaks.exempt_caller(len)  # type: ignore[arg-type]


def test_check_interval() -> None:
    assert leaks.check_interval(None, None) is None
    assert leaks.check_interval(None, 5.0) == 5.0
    assert leaks.check_interval(8.0, None) == 2.0
    assert leaks.check_interval(8.0, 1.0) == 1.0
    assert leaks.check_interval(1e-6, None) == 0.01


def test_report_logs_a_warning_per_leak_and_an_info_per_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fairpool")
    core: PoolCore[FakeConn] = PoolCore(make_config(leak_timeout=1.0), now=0.0)
    conn = borrow(core, 0.0)
    slot = core.slot_of(conn)
    assert slot is not None
    slot.borrower = leaks.borrower(sys._getframe())
    slot.endpoint = "h:1"
    core.maintain(1.5)
    leaked, back = core.take_leaks()
    leaks.report(logging.getLogger("fairpool"), 1.0, leaked, back, 1.5)
    core.release(conn, 3.0)
    leaked, back = core.take_leaks()
    leaks.report(logging.getLogger("fairpool"), 1.0, leaked, back, 3.0)
    warning, info = caplog.records
    assert warning.levelno == logging.WARNING and info.levelno == logging.INFO
    text = warning.getMessage()
    assert "C" in text and "to h:1 borrowed 1.500s ago (leak_timeout=1.0s)" in text
    assert "test_report_logs_a_warning" in text
    assert "came back after 3.000s" in info.getMessage()
