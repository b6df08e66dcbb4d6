"""The core's timings, with a fake clock: wait time (queued to served), hold time (borrow to
release, whichever way the borrow was served: idle hit, dial, hand-over, turn) and the windowed
counters of ``stats(reset=True)``. Fast and I/O-free (mutation testing runs them)."""

from __future__ import annotations

import pytest

from fairpool.config import make_config
from fairpool.core import DIAL, WAIT, PoolCore, Slot, Waiter
from fairpool.errors import PoolTimeoutError
from fairpool.metrics.histogram import BUCKETS

from .helpers import FakeConn, dial_new


class _Waiter(Waiter):
    def wake(self) -> None:
        pass


def _core(**settings: object) -> PoolCore[FakeConn]:
    return PoolCore(make_config(**settings), now=0.0, rng=lambda: 0.0)  # type: ignore[arg-type]


def _bucket(value: float) -> int:
    return next((i for i, b in enumerate(BUCKETS) if value <= b), len(BUCKETS))


def test_hold_time_of_a_dialled_then_an_idle_borrow() -> None:
    core = _core()
    (conn,) = dial_new(core, 1, 10.0)
    assert core.release(conn, 10.5)  # dialled at 10.0: held 0.5 s
    got = core.acquire(20.0)
    assert isinstance(got, Slot) and got.conn is conn
    assert core.release(conn, 22.0)  # borrowed idle at 20.0: held 2 s, not 12 (since creation)
    hold = core.timings.hold.snapshot()
    assert hold.count == 2 and hold.sum == 2.5 and hold.max == 2.0
    assert hold.counts[_bucket(0.5)] == 1 and hold.counts[_bucket(2.0)] == 1
    assert core.timings.wait.snapshot().count == 0


def test_a_foreign_or_second_release_records_no_hold() -> None:
    core = _core()
    (conn,) = dial_new(core, 1, 0.0)
    assert core.release(conn, 1.0)
    assert not core.release(conn, 5.0)
    assert not core.release(FakeConn(), 5.0)
    assert core.timings.hold.snapshot().count == 1


def test_an_unusable_release_still_ends_a_hold() -> None:
    core = _core()
    (conn,) = dial_new(core, 1, 0.0)
    assert core.release(conn, 0.25, reusable=False)
    hold = core.timings.hold.snapshot()
    assert (hold.count, hold.sum) == (1, 0.25)


def test_equal_holds_add_up_in_one_bucket() -> None:
    core = _core()
    (conn,) = dial_new(core, 1, 0.0)
    assert core.release(conn, 0.5)
    assert isinstance(core.acquire(1.0), Slot)
    assert core.release(conn, 1.5)  # held 0.5 s again
    hold = core.timings.hold.snapshot()
    assert hold.counts[_bucket(0.5)] == 2 and hold.count == 2 and hold.max == 0.5


def test_a_slot_released_again_after_it_was_dropped_is_refused() -> None:
    """The shells release by slot (the one ``borrowed()`` returned before their lock): a second
    release of a slot the first one closed (not reusable) changes nothing."""
    core = _core()
    (conn,) = dial_new(core, 1, 0.0)
    slot = core.borrowed(conn)
    assert slot is not None
    assert core.release_slot(slot, 0.25, False)
    assert core.take_trash() == [(conn, "error")]
    assert not core.release_slot(slot, 0.5, True)
    assert core.open_count == 0 and core.idle_count == 0 and not core.trash
    assert core.timings.hold.snapshot().count == 1


def test_wait_and_hold_through_a_hand_over() -> None:
    core = _core(max_connections=1, block=True)
    (conn,) = dial_new(core, 1, 0.0)
    assert core.acquire(1.0) is WAIT
    waiter = _Waiter()
    core.enqueue(waiter, 1.0)
    assert core.release(conn, 3.0)  # handed to the waiter, which queued 2 s
    assert waiter.slot is not None and waiter.slot.conn is conn
    wait = core.timings.wait.snapshot()
    assert (wait.count, wait.sum, wait.max) == (1, 2.0, 2.0)
    assert wait.counts[_bucket(2.0)] == 1
    assert core.release(conn, 3.5)  # the waiter's hold started at the hand-over
    hold = core.timings.hold.snapshot()
    assert (hold.count, hold.sum, hold.max) == (2, 3.5, 3.0)


def test_a_timed_out_wait_is_recorded() -> None:
    core = _core(max_connections=1, block=True, timeout=1.0)
    dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is WAIT
    waiter = _Waiter()
    core.enqueue(waiter, 0.0)
    with pytest.raises(PoolTimeoutError):
        core.finish_wait(waiter, 1.0)
    wait = core.timings.wait.snapshot()
    assert (wait.count, wait.sum) == (1, 1.0)


def test_hold_time_restarts_on_a_turn() -> None:
    core = _core(max_connections=1, block=True, turn_borrows=4)
    (conn,) = dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is WAIT
    core.enqueue(_Waiter(), 0.0)
    assert core.release(conn, 1.0, owner="me")  # held for my turn: hold 1 s
    assert core.held is not None
    got = core.acquire(5.0, owner="me")  # my reborrow at 5.0
    assert isinstance(got, Slot) and got.conn is conn
    assert core.release(conn, 5.25, owner="me")
    hold = core.timings.hold.snapshot()
    assert (hold.count, hold.sum, hold.max) == (2, 1.25, 1.0)


def test_window_counts_afresh_after_reset() -> None:
    core = _core(max_connections=2, block=True)
    a, _b = dial_new(core, 2, 0.0)
    core.release(a, 1.0)
    first = core.stats(2.0, reset=True)
    assert first.window.seconds == 2.0
    assert (first.window.borrows, first.window.misses, first.window.created) == (2, 2, 2)
    assert first.window.hold_histogram.count == 1 and first.window.hold_time_max == 1.0
    assert first.hold_histogram.count == 1
    # the next window: one idle hit, held 0.5 s; b still out
    got = core.acquire(3.0)
    assert isinstance(got, Slot) and got.conn is a
    core.release(a, 3.5)
    second = core.stats(4.0)
    assert second.window.seconds == 2.0
    assert (second.window.borrows, second.window.hits, second.window.misses) == (1, 1, 0)
    assert second.window.created == 0
    assert second.window.hold_histogram.count == 1
    assert second.window.hold_time_max == 0.5  # the window's maximum, not the all-time 1.0
    assert second.hold_histogram.max == 1.0 and second.hold_histogram.count == 2
    assert second.borrows == 3 and second.created == 2  # the snapshot itself stays all-time
    # without reset the window goes on
    third = core.stats(6.0)
    assert third.window.seconds == 4.0 and third.window.borrows == 1


def test_window_wait_max_and_closes() -> None:
    core = _core(max_connections=1, block=True)
    (conn,) = dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is WAIT
    core.enqueue(_Waiter(), 0.0)
    core.release(conn, 3.0)  # a 3 s wait
    core.stats(3.0, reset=True)
    assert core.acquire(3.0) is WAIT
    core.enqueue(_Waiter(), 3.0)
    core.release(conn, 3.5)  # a 0.5 s wait in the new window
    core.release(conn, 4.0, reusable=False)  # closed: error
    s = core.stats(5.0)
    assert s.wait_time_max == 3.0 and s.window.wait_time_max == 0.5
    assert s.window.waits == 1 and s.window.wait_time_total == 0.5
    assert s.window.closed["error"] == 1 and s.closed["error"] == 1
    s = core.stats(5.0, reset=True)
    assert core.stats(5.0).window.closed["error"] == 0


def test_dial_time() -> None:
    core = _core()
    assert core.acquire(0.0) is DIAL
    core.timings.observe_dial(0.003)
    core.timings.observe_dial(90.0)
    dial = core.stats(1.0).dial_histogram
    assert dial.count == 2 and dial.counts[-1] == 1 and dial.max == 90.0
