"""The operator controls in the I/O-free core (issue 15): ``leak_timeout``, ``max_waiting``,
``resize()`` and ``drain()``, with a fake clock.

A hypothesis state machine drives borrows (some shed), releases, waiters collecting what they were
granted, clock advances with the maintenance the core says is due (as the shells run it), refill
dials, resizes and drains (all endpoints or one), and checks after every step that

* a borrow is refused with :class:`PoolOverloadedError` exactly when ``max_waiting`` callers
  already wait, and ``sheds`` counts exactly those;
* open + dialling never exceeds the cap except by connections already retiring (closed when
  released), so once every connection is back no more than the current cap are open;
* no connection that existed when a drain covering it ran is ever handed out again, and each is
  closed (``"drain"``, or an earlier reason such as a failed release) by the time it is back;
* a borrow is reported as leaked at most once, exactly when due maintenance runs at or after its
  deadline while it is still borrowed (and never for an exempt one); ``leaks`` counts the reports
  and each reported connection's release is flagged once; maintenance is never due later than
  the earliest leak deadline.

Fast unit tests pin the boundaries (the mutation run uses them).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fairpool.config import Policy, drain_target, make_config, resized_config
from fairpool.core import DIAL, WAIT, PoolCore, Slot
from fairpool.errors import PoolExhaustedError, PoolOverloadedError
from fairpool.slot import EXEMPT, LEAKED
from fairpool.stats import CLOSE_REASONS

from .helpers import FakeConn, borrow, budget, dial_new
from .test_core_lifecycle_model import FakeWaiter

INF = math.inf
ENDPOINTS = ["p0:1", "p1:1"]


class ControlsMachine(RuleBasedStateMachine):
    @initialize(
        policy=st.sampled_from(list(Policy)),
        max_connections=st.integers(1, 5),
        max_waiting=st.sampled_from([None, 0, 1, 3]),
        leak_timeout=st.sampled_from([None, 0.05, 0.3]),
        min_idle=st.integers(0, 2),
    )
    def setup(
        self,
        policy: Policy,
        max_connections: int,
        max_waiting: int | None,
        leak_timeout: float | None,
        min_idle: int,
    ) -> None:
        self.core: PoolCore[FakeConn] = PoolCore(
            make_config(
                policy=policy,
                block=True,
                max_connections=max_connections,
                min_idle=min(min_idle, max_connections),
                max_waiting=max_waiting,
                leak_timeout=leak_timeout,
            ),
            now=0.0,
        )
        self.now = 0.0
        self.mine: dict[FakeConn, float] = {}  # borrowed by the test: when
        self.exempt: set[FakeConn] = set()
        self.waiters: list[FakeWaiter] = []
        self.refills = 0
        self.stale: set[FakeConn] = set()  # existed when a drain covering them ran
        self.sheds = 0
        self.reported: set[FakeConn] = set()  # reported leaks of the current borrows
        self.reports = 0
        self.backs = 0
        self.endpoint_of: dict[FakeConn, str] = {}
        self.closed: dict[FakeConn, str] = {}
        self.dialling_seen = 0
        self.pending: dict[FakeConn, float] = {}  # handed to a waiter that has not collected it

    def _tick(self, dt: float = 0.001) -> float:
        self.now = round(self.now + dt, 6)
        return self.now

    def _new(self, conn: FakeConn, slot: Slot[FakeConn]) -> None:
        slot.endpoint = ENDPOINTS[len(self.endpoint_of) % 2]
        self.endpoint_of[conn] = slot.endpoint

    def _collect(self) -> None:
        for w in self.waiters:
            if w.slot is not None and w.slot.conn not in self.pending:
                conn = w.slot.conn  # handed over in this step: borrowed from now on
                assert conn not in self.stale and conn not in self.mine
                self.pending[conn] = self.now
        for conn, reason in self.core.take_trash():
            assert conn not in self.closed
            assert conn not in self.mine and conn not in self.pending, "closed a borrowed one"
            self.closed[conn] = reason
            if conn in self.stale:
                assert reason in ("drain", "error", "resize"), reason  # retiring already
                self.stale.discard(conn)
        leaked, back = self.core.take_leaks()
        for slot in leaked:
            conn = slot.conn
            since = self.mine.get(conn, self.pending.get(conn))
            assert since is not None and conn not in self.reported and conn not in self.exempt
            timeout = self.core.config.leak_timeout
            assert timeout is not None and self.now >= since + timeout
            self.reported.add(conn)
            self.reports += 1
        self.backs += len(back)

    def _got(self, conn: FakeConn) -> None:
        assert conn not in self.stale, "handed out a drained connection"
        assert conn not in self.mine
        self.mine[conn] = self.now

    # ------------------------------------------------------------------ rules
    @rule(ok=st.booleans())
    def borrow(self, ok: bool) -> None:
        now = self._tick()
        core = self.core
        waiting = core.waiting
        try:
            got = core.acquire(now)
        except PoolOverloadedError as exc:
            limit = core.config.max_waiting
            assert limit is not None and waiting >= limit
            assert f"{waiting} callers already wait" in str(exc)
            self.sheds += 1
            return
        limit = core.config.max_waiting
        if got is WAIT:
            assert limit is None or waiting < limit
            w = FakeWaiter()
            core.enqueue(w, now)
            self.waiters.append(w)
        elif got is DIAL:
            self._dial(ok)
        else:
            assert isinstance(got, Slot)
            self._got(got.conn)
        self._collect()

    def _dial(self, ok: bool) -> None:
        if not ok:
            self.core.dial_failed()
            return
        conn = FakeConn()
        slot = self.core.dialled(conn, self.now)
        self._new(conn, slot)
        self._got(conn)

    @precondition(lambda self: self.mine)
    @rule(data=st.data(), reusable=st.sampled_from([True, True, False]))
    def release(self, data: st.DataObject, reusable: bool) -> None:
        conn = data.draw(st.sampled_from(sorted(self.mine, key=lambda c: c.id)))
        del self.mine[conn]
        self.exempt.discard(conn)
        was_reported = conn in self.reported
        self.reported.discard(conn)
        backs = self.backs
        assert self.core.release(conn, self._tick(), reusable)
        self._collect()
        assert self.backs == backs + was_reported

    @precondition(lambda self: self.mine)
    @rule(data=st.data())
    def exempt_one(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.mine, key=lambda c: c.id)))
        assert self.core.exempt(conn)
        if conn not in self.reported:
            self.exempt.add(conn)

    @precondition(lambda self: any(w.done for w in self.waiters))
    @rule(ok=st.booleans())
    def waiter_collects(self, ok: bool) -> None:
        w = next(w for w in self.waiters if w.done)
        self.waiters.remove(w)
        got = self.core.finish_wait(w, self._tick())
        if got is DIAL:
            self._dial(ok)
        else:
            assert isinstance(got, Slot)
            self.mine[got.conn] = self.pending.pop(got.conn)
        self._collect()

    @rule(dt=st.sampled_from([0.01, 0.06, 0.2, 0.4]))
    def advance(self, dt: float) -> None:
        now = self._tick(dt)
        if now >= self.core.next_maintenance:
            self.refills += self.core.maintain(now)
        self._collect()

    @precondition(lambda self: self.refills)
    @rule(ok=st.booleans())
    def refill_done(self, ok: bool) -> None:
        self.refills -= 1
        if ok:
            conn = FakeConn()
            slot = self.core.dialled_idle(conn, self._tick())
            self._new(conn, slot)
            if not slot.in_use:
                pass
            elif conn not in self.mine:
                # went straight to the oldest waiter
                pass
        else:
            self.core.dial_failed()
        self._collect()

    @rule(
        max_connections=st.integers(1, 6),
        min_idle=st.integers(0, 3),
        max_idle=st.sampled_from([..., None, 0, 1, 4]),
    )
    def resize(self, max_connections: int, min_idle: int, max_idle: object) -> None:
        cfg = self.core.config
        try:
            new = resized_config(
                cfg, max_connections=max_connections, min_idle=min_idle, max_idle=max_idle
            )
        except ValueError as exc:
            assert "fairpool setting" in str(exc)
            return
        grantable = max(0, max_connections - (self.core.open_count + self.core.dialling))
        queued = sum(1 for w in self.waiters if not w.done)
        self.core.resize(new, self._tick())
        granted = queued - sum(1 for w in self.waiters if not w.done)
        assert granted == min(queued, grantable), "growing must serve waiters at once"
        if new.max_idle is not None:
            assert self.core.idle_count <= new.max_idle
        self._collect()

    @rule(which=st.sampled_from([None, *ENDPOINTS]))
    def drain(self, which: str | None) -> None:
        drains = self.core.drains
        target = drain_target(which, None)
        covered = {s.conn for s in self.core.slots() if which is None or s.endpoint == which}
        count = self.core.drain(target)
        assert self.core.drains == drains + 1
        fresh = covered - self.stale
        assert count >= len(fresh - {s.conn for s in self.core.slots() if s.retire})
        self.stale |= {c for c in covered if c not in self.closed}
        for slot in self.core.idle_slots():
            assert slot.conn not in self.stale, "a drained connection stayed idle"
        self._collect()

    # ------------------------------------------------------------- invariants
    @invariant()
    def within_cap(self) -> None:
        core = self.core
        retiring = sum(1 for s in core.slots() if s.retire is not None)
        # landed connections beyond the cap retire; dials reserved since stay within it
        assert core.open_count - retiring <= core.config.max_connections
        if core.dialling > self.dialling_seen:
            assert core.open_count + core.dialling - retiring <= core.config.max_connections
        self.dialling_seen = core.dialling
        for slot in core.idle_slots():
            assert slot.retire is None

    @invariant()
    def counted(self) -> None:
        stats = self.core.stats()
        assert stats.sheds == self.sheds
        assert stats.leaks == self.reports

    @invariant()
    def leaks_scheduled(self) -> None:
        timeout = self.core.config.leak_timeout
        if timeout is None:
            return
        pending = [
            t + timeout
            for c, t in [*self.mine.items(), *self.pending.items()]
            if c not in self.reported and c not in self.exempt
        ]
        if pending:
            assert self.core.next_maintenance <= min(pending) + 1e-9


TestControlsMachine = ControlsMachine.TestCase
TestControlsMachine.settings = settings(
    max_examples=budget(300), stateful_step_count=50, deadline=None
)


# ---------------------------------------------------------------- unit tests
def core_with(**kw: object) -> PoolCore[FakeConn]:
    return PoolCore(make_config(**kw), now=0.0)  # type: ignore[arg-type]


def test_max_waiting_sheds_the_next_borrow_and_counts_it() -> None:
    core = core_with(max_connections=1, block=True, max_waiting=2)
    (_held,) = dial_new(core, 1, 0.0)
    for _ in range(2):
        assert core.acquire(0.0) is WAIT
        core.enqueue(FakeWaiter(), 0.0)
    with pytest.raises(PoolOverloadedError) as info:
        core.acquire(0.0)
    assert isinstance(info.value, PoolExhaustedError)
    assert "2 callers already wait" in str(info.value) and "max_waiting=2" in str(info.value)
    assert core.stats().sheds == 1 and core.waiting == 2


def test_max_waiting_zero_never_queues_and_none_never_sheds() -> None:
    core = core_with(max_connections=1, block=True, max_waiting=0)
    dial_new(core, 1, 0.0)
    with pytest.raises(PoolOverloadedError, match="0 callers already wait"):
        core.acquire(0.0)
    unlimited = core_with(max_connections=1, block=True)
    dial_new(unlimited, 1, 0.0)
    for _ in range(50):
        assert unlimited.acquire(0.0) is WAIT
        unlimited.enqueue(FakeWaiter(), 0.0)
    assert unlimited.stats().sheds == 0


def test_max_waiting_without_block_raises_the_plain_exhausted_error() -> None:
    core = core_with(max_connections=1, max_waiting=0)
    dial_new(core, 1, 0.0)
    with pytest.raises(PoolExhaustedError) as info:
        core.acquire(0.0)
    assert not isinstance(info.value, PoolOverloadedError) and core.sheds == 0


def test_leak_reported_once_at_its_deadline_and_its_return_flagged() -> None:
    core = core_with(leak_timeout=2.0)
    assert core.next_maintenance == 2.0  # the first borrow's deadline, at the earliest
    a = borrow(core, 0.0)
    b = borrow(core, 1.0)
    core.maintain(1.999)
    assert core.take_leaks() == ([], []) and core.next_leak == 2.0
    core.maintain(2.0)
    leaked, back = core.take_leaks()
    assert [s.conn for s in leaked] == [a] and back == []
    assert core.slot_of(a).leak == LEAKED  # type: ignore[union-attr]
    assert core.next_leak == 3.0 and core.next_maintenance <= 3.0
    core.maintain(2.5)
    assert core.take_leaks() == ([], [])  # reported once only
    assert core.release(a, 4.5)
    leaked, back = core.take_leaks()
    assert leaked == [] and [(s.conn, held) for s, held in back] == [(a, 4.5)]
    assert core.slot_of(a).leak == 0  # type: ignore[union-attr]
    core.maintain(5.0)
    leaked, _ = core.take_leaks()
    assert [s.conn for s in leaked] == [b]
    assert core.stats().leaks == 2
    core.release(b, 6.0)
    assert [held for _, held in core.take_leaks()[1]] == [5.0]
    # a, borrowed again, is watched afresh
    assert borrow(core, 6.0) is a
    core.maintain(7.999)
    assert core.take_leaks() == ([], [])
    core.maintain(8.0)
    assert [s.conn for s in core.take_leaks()[0]] == [a]


def test_leak_deadline_restarts_on_every_kind_of_borrow() -> None:
    core = core_with(max_connections=1, block=True, leak_timeout=1.0)
    (a,) = dial_new(core, 1, 0.0)
    w = FakeWaiter()
    assert core.acquire(0.5) is WAIT
    core.enqueue(w, 0.5)
    core.release(a, 0.9)  # handed over: a new borrow at 0.9
    assert w.slot is not None and w.slot.borrowed == 0.9
    core.maintain(1.5)
    assert core.take_leaks() == ([], [])
    core.release(a, 1.6)
    assert core.acquire(1.7) is w.slot and w.slot.borrowed == 1.7
    # a turn: released while someone waits, borrowed again by its owner
    w2 = FakeWaiter()
    assert core.acquire(1.8, owner="me") is WAIT
    core.enqueue(w2, 1.8)
    core.release(a, 1.9, owner="me")
    assert core.held is not None and core.acquire(2.5, owner="me") is w.slot
    assert w.slot.borrowed == 2.5
    core.maintain(3.4)
    assert core.take_leaks() == ([], []) and core.next_leak == 3.5


def test_held_taken_and_exempt_connections_are_never_reported() -> None:
    core = core_with(max_connections=3, block=True, leak_timeout=1.0)
    a, b, c = dial_new(core, 3, 0.0)
    assert core.exempt(a) and core.slot_of(a).leak == EXEMPT  # type: ignore[union-attr]
    core.release(b, 0.1)
    taken = core.take_idle()
    assert core.acquire(0.2) is WAIT
    core.enqueue(FakeWaiter(), 0.2)
    core.release(c, 0.3, owner="me")  # held for its owner's turn
    assert core.held is not None
    core.maintain(10.0)
    assert core.take_leaks() == ([], []) and core.leaks == 0
    assert core.exempt(FakeConn()) is False
    core.put_back(taken, 10.0)
    assert core.exempt(b) is True  # handed to the waiter: borrowed


def test_exempt_release_is_not_flagged_and_the_exemption_ends_with_it() -> None:
    core = core_with(leak_timeout=1.0)
    a = borrow(core, 0.0)
    core.exempt(a)
    core.release(a, 5.0)
    assert core.take_leaks() == ([], [])
    assert borrow(core, 5.0) is a and core.slot_of(a).leak == 0  # type: ignore[union-attr]
    core.maintain(6.0)
    assert [s.conn for s in core.take_leaks()[0]] == [a]
    core.exempt(a)  # after the report: stays reported (its release is still flagged)
    core.release(a, 7.0)
    assert len(core.take_leaks()[1]) == 1


def test_leak_detection_off_schedules_nothing() -> None:
    core = core_with()
    borrow(core, 0.0)
    core.maintain(1e6)
    assert core.take_leaks() == ([], []) and core.next_maintenance == INF


def test_resize_grow_grants_dials_to_waiters_at_once() -> None:
    core = core_with(max_connections=1, block=True)
    dial_new(core, 1, 0.0)
    waiters = [FakeWaiter() for _ in range(3)]
    for w in waiters:
        assert core.acquire(0.0) is WAIT
        core.enqueue(w, 0.0)
    core.resize(resized_config(core.config, max_connections=3), 0.1)
    assert [w.dial for w in waiters] == [True, True, False] and core.dialling == 2
    assert [w.woken for w in waiters] == [1, 1, 0] and core.waiting == 1


def test_resize_shrink_closes_idle_now_and_borrowed_on_release() -> None:
    core = core_with(max_connections=5, block=True)
    conns = dial_new(core, 5, 0.0)
    for conn in conns[:2]:
        core.release(conn, 0.0)
    core.resize(resized_config(core.config, max_connections=2), 1.0)
    assert sorted(r for _, r in core.take_trash()) == ["resize", "resize"]
    assert core.open_count == 3
    retiring = [s.conn for s in core.slots() if s.retire == "resize"]
    assert retiring == [conns[2]]  # the oldest borrowed one, just enough
    for conn in conns[2:]:
        core.release(conn, 2.0)
    assert core.take_trash() == [(conns[2], "resize")]
    assert core.open_count == 2 and core.stats().closed["resize"] == 3


def test_maintenance_above_the_shrunk_cap_dials_nothing() -> None:
    """After a shrink, more connections may be open than the cap allows: the ``min_idle`` refill
    plans no dial (never a negative count) and reserves nothing."""
    core = core_with(max_connections=5, min_idle=1, block=True)
    dial_new(core, 5, 0.0)
    core.resize(resized_config(core.config, max_connections=2, min_idle=2), 1.0)
    assert core.maintain(1.0) == 0 and core.dialling == 0
    assert core.acquire(1.0) is WAIT  # the cap is not exceeded by a refill in flight either


def test_resize_counts_connections_already_retiring() -> None:
    core = core_with(max_connections=3)
    a, _b, _c = dial_new(core, 3, 0.0)
    assert core.retire(core.slot_of(a), "rebalance")  # type: ignore[arg-type]
    core.resize(resized_config(core.config, max_connections=2), 1.0)
    assert [s.retire for s in core.slots()] == ["rebalance", None, None]
    core.resize(resized_config(core.config, max_connections=1), 1.0)
    assert [s.retire for s in core.slots()] == ["rebalance", "resize", None]


def test_resize_shrink_retires_dials_that_land_above_the_cap() -> None:
    core = core_with(max_connections=3)
    (a,) = dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is DIAL and core.acquire(0.0) is DIAL
    assert core.reserve_dial() is False
    core.resize(resized_config(core.config, max_connections=1), 0.0)
    assert core.slot_of(a).retire == "resize"  # type: ignore[union-attr]
    b, c = FakeConn(), FakeConn()
    assert core.dialled(b, 0.1).retire == "resize"  # a's retirement leaves room for one only
    assert core.dialled(c, 0.1).retire is None
    for conn in (a, b, c):
        core.release(conn, 0.2)
    assert core.take_trash() == [(a, "resize"), (b, "resize")] and core.open_count == 1


def test_resize_refill_dial_above_the_cap_is_closed_at_once() -> None:
    core = core_with(max_connections=2, min_idle=2)
    assert core.maintain(0.0) == 2
    core.resize(resized_config(core.config, max_connections=1, min_idle=1), 0.0)
    a, b = FakeConn(), FakeConn()
    core.dialled_idle(a, 0.1)
    core.dialled_idle(b, 0.1)
    assert core.take_trash() == [(a, "resize")] and core.open_count == 1


def test_resize_max_idle_and_min_idle() -> None:
    core = core_with(max_connections=6, policy="lifo")
    conns = dial_new(core, 4, 0.0)
    for conn in conns:
        core.release(conn, 0.0)
    core.resize(resized_config(core.config, max_idle=1), 1.0)
    assert sorted(r for _, r in core.take_trash()) == ["max_idle"] * 3
    assert core.idle_count == 1 and core.config.max_idle == 1
    core.resize(resized_config(core.config, min_idle=3, max_idle=3), 2.0)
    assert core.next_maintenance == -INF and core.maintain(2.0) == 2
    core.resize(resized_config(core.config, min_idle=0, max_idle=None), 3.0)
    assert core.config.max_idle is None and core.config.max_connections == 6
    assert core.next_maintenance == INF


def test_resized_config_validates_like_the_settings() -> None:
    cfg = make_config(max_connections=4, min_idle=2)
    with pytest.raises(ValueError, match="'min_idle' must be"):
        resized_config(cfg, max_connections=1)
    with pytest.raises(TypeError, match="'max_connections' must be integer ≥ 1"):
        resized_config(cfg, max_connections="8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'max_idle' must be"):
        resized_config(cfg, max_idle=1)
    assert resized_config(cfg) == cfg


def test_drain_closes_idle_now_borrowed_on_release_and_hands_them_to_nobody() -> None:
    core = core_with(max_connections=3, block=True)
    a, b, _c = dial_new(core, 3, 0.0)
    core.release(a, 0.0)
    assert core.drain() == 3 and core.drains == 1
    assert core.take_trash() == [(a, "drain")]
    w = FakeWaiter()
    assert core.acquire(0.1) is DIAL  # a's capacity: a fresh dial
    core.dialled(FakeConn(), 0.1)
    assert core.acquire(0.1) is WAIT
    core.enqueue(w, 0.1)
    core.release(b, 0.2)  # not handed to the waiter: closed, the waiter dials
    assert core.take_trash() == [(b, "drain")] and w.dial and w.slot is None
    assert core.stats().closed["drain"] == 2 and core.stats().drains == 1
    assert core.drain() == 1  # the fresh one; c (still retiring) is not counted again


def test_drain_one_endpoint_by_target_or_peer() -> None:
    core = core_with(max_connections=4)
    a, b, c = dial_new(core, 3, 0.0)
    core.slot_of(a).target = ("h1", 1)  # type: ignore[union-attr]
    core.slot_of(b).endpoint = "h1:1"  # type: ignore[union-attr]
    core.slot_of(c).endpoint = "h2:1"  # type: ignore[union-attr]
    for conn in (a, b, c):
        core.release(conn, 0.0)
    assert core.drain(("h1", 1)) == 2
    assert sorted(conn.id for conn, _ in core.take_trash()) == sorted([a.id, b.id])
    assert core.open_count == 1


def test_drain_below_min_idle_makes_maintenance_due() -> None:
    core = core_with(max_connections=3, min_idle=2)
    assert core.maintain(0.0) == 2
    for _ in range(2):
        core.dialled_idle(FakeConn(), 0.0)
    core.maintain(0.5)
    assert core.next_maintenance > 0.5
    core.drain()
    assert core.next_maintenance == -INF and core.maintain(0.6) == 2


def test_drain_target_parsing() -> None:
    assert drain_target(None, None) is None
    assert drain_target("h:1", None) == ("h", 1)
    assert drain_target(("h", 2), (("h", 2),)) == ("h", 2)
    with pytest.raises(ValueError, match="not one of the pool's endpoints"):
        drain_target("h:3", (("h", 2),))
    with pytest.raises(ValueError, match="host:port"):
        drain_target("nonsense", None)


def test_stats_and_close_reasons_carry_the_controls() -> None:
    assert {"drain", "resize"} <= set(CLOSE_REASONS)
    d = core_with().stats().as_dict()
    assert d["leaks"] == d["sheds"] == d["drains"] == 0


@pytest.mark.parametrize(
    ("kw", "exc", "words"),
    [
        ({"leak_timeout": 0}, ValueError, "'leak_timeout' must be `None` or number > 0"),
        ({"leak_timeout": "1"}, TypeError, "'leak_timeout'"),
        ({"max_waiting": -1}, ValueError, "'max_waiting' must be `None` or integer ≥ 0"),
        ({"max_waiting": 1.5}, TypeError, "'max_waiting'"),
    ],
)
def test_settings_validated_with_their_range(
    kw: dict[str, object], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words.replace("(", r"\(")):
        make_config(**kw)  # type: ignore[arg-type]


def test_resize_by_one_and_without_surplus() -> None:
    core = core_with(max_connections=3, policy="lifo")
    a, b, c = dial_new(core, 3, 0.0)
    core.release(a, 0.0)
    core.resize(resized_config(core.config, max_connections=2), 1.0)  # one over: the idle one
    assert core.take_trash() == [(a, "resize")]
    assert [s.retire for s in core.slots()] == [None, None]
    core.release(b, 1.0)
    core.resize(resized_config(core.config, max_connections=3, max_idle=2), 2.0)  # nothing over
    assert core.take_trash() == [] and core.idle_count == 1
    core.resize(resized_config(core.config, min_idle=2), 3.0)  # as many open as min_idle
    assert core.next_maintenance != -INF
    core.release(c, 3.0)


def test_resize_closes_idle_of_the_most_crowded_endpoint_first() -> None:
    core = core_with(max_connections=4)  # FIFO
    conns = dial_new(core, 4, 0.0)
    for conn, endpoint in zip(conns, ["a", "b", "b", "b"], strict=True):
        core.slot_of(conn).endpoint = endpoint  # type: ignore[union-attr]
    for conn in reversed(conns):  # hand-out order: b3, b2, b1, a
        core.release(conn, 0.0)
    core.resize(resized_config(core.config, max_connections=1), 1.0)
    assert [s.conn for s in core.slots()] == [conns[3]]  # the newest of b, not a


def test_resize_falls_back_to_any_idle_when_balance_holds_back() -> None:
    core = core_with(max_connections=9)
    conns = dial_new(core, 9, 0.0)
    for i, conn in enumerate(conns):
        core.slot_of(conn).endpoint = "abc"[i // 3]  # type: ignore[union-attr]
    for conn in conns[3:]:  # a's three stay borrowed; b's and c's are idle
        core.release(conn, 0.0)
    core.resize(resized_config(core.config, max_connections=4), 1.0)
    assert [r for _, r in core.take_trash()] == ["resize"] * 5
    assert core.idle_count == 1 and core.open_count == 4
    assert not [s for s in core.slots() if s.retire]


def test_resize_closes_idle_before_retiring_borrowed_while_a_dial_is_in_flight() -> None:
    core = core_with(max_connections=3)
    a, b = dial_new(core, 2, 0.0)
    core.release(a, 0.0)
    assert core.reserve_dial()  # a dial in flight
    core.resize(resized_config(core.config, max_connections=1), 0.2)
    assert core.take_trash() == [(a, "resize")]
    assert core.slot_of(b).retire == "resize"  # type: ignore[union-attr]
