"""The lifecycle of the I/O-free core against a reference model, with a fake clock.

Hypothesis drives borrows, releases (reusable or not), discards, waiters, explicit ``maintain()``
calls, ``min_idle`` refill dials that stay in flight and then succeed or fail, and the clock: an
``advance`` moves it in steps of at most :data:`PERIOD` and runs maintenance at every step at which
the core says it is due (``now >= next_maintenance``), as the shells' lazy or periodic maintenance
does. Settings drawn: the policy, ``max_connections``, ``min_idle``, ``max_idle``, ``idle_timeout``,
``max_lifetime`` with ``lifetime_jitter`` (the jitter made deterministic by a seeded random source
given to the core and to the model), the core's ``period``, ``block``, and several endpoints (plus
connections whose endpoint is unknown).

The model states the lifecycle rules in their simplest form (docs/design.md, "The lifecycle
specification"); after every step the core must agree with it exactly — what is open, idle and
dialling, what was closed and why, what a refill dials, when maintenance is next due — and the
whole-run properties must hold: a demand shrink never widens the spread over endpoints (beyond
1), never closes a connection the window's peak needed, the pool is never below ``min_idle`` for
longer than the refill retry when it could dial, nothing stays idle past its lifetime or idle
timeout once a due maintenance ran, and maintenance is never due later than the earliest deadline.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fairpool.config import Policy, make_config
from fairpool.core import DIAL, WAIT, PoolCore, Slot, Waiter
from fairpool.errors import PoolClosedError, PoolExhaustedError, PoolTimeoutError
from fairpool.upkeep import _REFILL_RETRY

from .helpers import FakeConn, budget, dial_new

INF = math.inf
PERIOD = 0.25  # the timer's granularity: advance() runs due maintenance at least this often
TICK = 0.001  # every other call happens a little later than the previous one
ENDPOINTS = ["p0", "p1", "p2"]


class FakeWaiter(Waiter):
    __slots__ = ("woken",)

    def __init__(self) -> None:
        super().__init__()
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


@dataclass
class Conn:
    """The model's record of one open connection."""

    seq: int
    endpoint: str | None
    expires: float
    released: float
    idle: bool


def spread(counts: Counter[str | None]) -> int:
    """Most minus fewest connections over the known endpoints that have any."""
    known = [n for e, n in counts.items() if e is not None and n > 0]
    return max(known) - min(known) if known else 0


class Model:
    """The lifecycle rules, stated as plainly as possible (see docs/design.md)."""

    def __init__(
        self,
        policy: Policy,
        max_connections: int,
        min_idle: int,
        max_idle: int | None,
        idle_timeout: float | None,
        lifetime: float | None,
        jitter: float,
        seed: int,
        period: float | None,
    ) -> None:
        self.policy = policy
        self.max = max_connections
        self.min_idle = min_idle
        self.max_idle = max_idle
        self.timeout = idle_timeout
        self.lifetime = lifetime
        self.jitter = jitter
        self.rng = random.Random(seed)
        self.period = period
        self.conns: dict[FakeConn, Conn] = {}
        self.seq = 0
        self.dialling = 0
        self.waiters: list[FakeWaiter] = []  # queued, in arrival order
        self.granted: list[FakeWaiter] = []  # woken with a connection or a dial, to collect
        self.closed: list[tuple[FakeConn, str]] = []  # closes the core must have queued
        self.is_closed = False
        self.borrows = 0
        # the demand window: idle counts seen in it, each lowered by every close since
        self.window_end = idle_timeout if idle_timeout is not None else INF
        self.samples = [0]
        self.window_borrows = 0
        self.peak = 0  # most connections in use at once in the window
        self.due = -INF  # set by schedule() below
        self.schedule(0.0)

    # -- state
    @property
    def open(self) -> int:
        return len(self.conns)

    def idle(self) -> list[FakeConn]:
        return [c for c, r in self.conns.items() if r.idle]

    @property
    def in_use(self) -> int:
        return self.open - len(self.idle())

    def could_dial_short(self) -> bool:
        """Below min_idle counting dials in flight, and free to dial (open, no waiters, cap)."""
        want = min(self.min_idle, self.max)
        return not self.is_closed and not self.waiters and self.open + self.dialling < want

    def sample(self) -> None:
        """Record the moment (after every call: idle connections only ever drop inside one)."""
        self.samples.append(len(self.idle()))
        self.peak = max(self.peak, self.in_use)

    # -- events
    def new(self, conn: FakeConn, endpoint: str | None, now: float) -> None:
        self.seq += 1
        expires = INF
        if self.lifetime is not None:
            expires = now + self.lifetime * (1.0 - self.jitter * self.rng.random())
        self.conns[conn] = Conn(self.seq, endpoint, expires, now, idle=False)
        # a new connection brings its deadlines forward
        self.due = min(self.due, expires, self.idle_deadline(now))

    def close(self, conn: FakeConn, reason: str) -> None:
        del self.conns[conn]
        self.closed.append((conn, reason))
        self.samples = [n - 1 for n in self.samples]  # one fewer spare connection since then
        if self.min_idle:
            self.due = -INF  # a refill may be needed: maintenance is due at once
        self.grant_capacity()

    def grant_capacity(self) -> None:
        """Capacity freed (a close, a failed dial): the oldest waiters get it, and dial."""
        while self.waiters and not self.is_closed and self.open + self.dialling < self.max:
            self.dialling += 1
            self.granted.append(self.waiters.pop(0))

    def give_back(self, conn: FakeConn, now: float) -> None:
        """A usable connection comes back (a release, a refill dial)."""
        r = self.conns[conn]
        if self.is_closed:
            self.close(conn, "closed")
        elif now >= r.expires:
            self.close(conn, "lifetime")
        elif self.waiters:
            self.granted.append(self.waiters.pop(0))  # straight to the oldest waiter
            self.borrows += 1
        elif self.max_idle is not None and len(self.idle()) >= self.max_idle:
            self.close(conn, "max_idle")
        else:
            r.idle, r.released = True, now

    # -- maintenance
    def idle_deadline(self, now: float) -> float:
        if self.timeout is None:
            return INF
        if self.policy is not Policy.LIFO:
            return self.window_end
        if self.open <= self.min_idle:
            return INF  # nothing may be pruned
        return min((self.conns[c].released for c in self.idle()), default=now) + self.timeout

    def schedule(self, now: float) -> None:
        """When maintenance is next due, decided at the end of a maintenance run."""
        due = self.idle_deadline(now)
        due = min([due] + [r.expires for r in self.conns.values() if r.expires > now])
        if self.period is not None:
            due = min(due, now + self.period)
        if self.min_idle and self.open < self.min_idle:
            due = min(due, now + _REFILL_RETRY)
        self.due = due

    def victims(self, count: int, busy: bool) -> list[FakeConn]:
        """Repeatedly: the oldest idle connection of the most crowded endpoint that may lose one
        (not its last while the window was busy; never so that the spread grows beyond what it
        was, or 1)."""
        counts = Counter(r.endpoint for r in self.conns.values())
        limit = max(spread(counts), 1)
        keep = 1 if busy else 0
        left = sorted(self.idle(), key=lambda c: self.conns[c].seq)
        chosen: list[FakeConn] = []
        while len(chosen) < count:
            top = max((n for e, n in counts.items() if e is not None), default=0)

            def allowed(c: FakeConn, top: int = top) -> bool:
                e = self.conns[c].endpoint
                n = counts[e]
                return e is None or (n > keep and (n == 1 or top - (n - 1) <= limit))

            options = [c for c in left if allowed(c)]
            if not options:
                break
            pick = max(options, key=lambda c: (counts[self.conns[c].endpoint], -self.conns[c].seq))
            chosen.append(pick)
            left.remove(pick)
            counts[self.conns[pick].endpoint] -= 1
        return chosen

    def maintain(self, now: float) -> int:
        if self.is_closed:
            self.due = INF
            return 0
        for c in self.idle():
            if now >= self.conns[c].expires:
                self.close(c, "lifetime")
                event("maintenance: lifetime")
        if self.timeout is not None:
            if self.policy is Policy.LIFO:
                stale = [c for c in self.idle() if self.conns[c].released + self.timeout <= now]
                for c in sorted(stale, key=lambda c: self.conns[c].released):
                    if self.open <= self.min_idle:
                        break
                    self.close(c, "idle")
                    event("maintenance: idle")
            elif now >= self.window_end:
                spare = max(0, min(self.samples))
                busy = self.borrows != self.window_borrows
                count = min(spare, len(self.idle()), self.open - self.min_idle)
                before = Counter(r.endpoint for r in self.conns.values())
                victims = self.victims(count, busy)
                for c in victims:
                    self.close(c, "demand")
                    event("maintenance: demand")
                if len(victims) < count:
                    event("maintenance: demand held back by balance")
                # whole-run properties of a demand shrink
                after = Counter(r.endpoint for r in self.conns.values())
                assert spread(after) <= max(spread(before), 1), (before, after)
                if victims:
                    assert self.open >= self.peak, "closed a connection the window's peak needed"
                self.window_end = now + self.timeout
                self.window_borrows = self.borrows
                self.samples = [len(self.idle())]
                self.peak = self.in_use
        need = 0
        if not self.waiters:
            need = max(0, min(self.min_idle, self.max) - self.open - self.dialling)
            self.dialling += need
        self.schedule(now)
        return need


class LifecycleMachine(RuleBasedStateMachine):
    """Drive PoolCore and the lifecycle model side by side."""

    @initialize(
        policy=st.sampled_from(list(Policy)),
        block=st.sampled_from([True, True, False]),
        max_connections=st.integers(1, 6),
        data=st.data(),
        idle_timeout=st.sampled_from([None, 0.3, 1.0, 1.0]),
        lifetime=st.sampled_from([None, None, 0.8, 2.5]),
        jitter=st.sampled_from([0.0, 0.05, 0.5]),
        seed=st.integers(0, 3),
        period=st.none() | st.just(0.7),
        endpoints=st.integers(1, 3),
        unknown=st.booleans(),
    )
    def setup(
        self,
        policy: Policy,
        block: bool,
        max_connections: int,
        data: st.DataObject,
        idle_timeout: float | None,
        lifetime: float | None,
        jitter: float,
        seed: int,
        period: float | None,
        endpoints: int,
        unknown: bool,
    ) -> None:
        min_idle = data.draw(st.integers(0, min(3, max_connections)), label="min_idle")
        max_idle = data.draw(
            st.sampled_from([None, None, min_idle, min_idle + 2]), label="max_idle"
        )
        self.core: PoolCore[FakeConn] = PoolCore(
            make_config(
                policy=policy,
                block=block,
                max_connections=max_connections,
                min_idle=min_idle,
                max_idle=max_idle,
                idle_timeout=idle_timeout,
                max_lifetime=lifetime,
                lifetime_jitter=jitter,
            ),
            rng=random.Random(seed).random,
            now=0.0,
            period=period,
        )
        self.model = Model(
            policy,
            max_connections,
            min_idle,
            max_idle,
            idle_timeout,
            lifetime,
            jitter,
            seed,
            period,
        )
        self.block = block
        self.endpoints: list[str | None] = ENDPOINTS[:endpoints] + ([None] if unknown else [])
        self.now = 0.0
        self.mine: list[FakeConn] = []  # borrowed by the test's callers
        self.refills = 0  # refill dials in flight (the test is dialling them)
        self.short_since: float | None = None  # since when the pool could dial but is short

    def _tick(self) -> float:
        self.now = round(self.now + TICK, 6)
        return self.now

    def _check_trash(self) -> None:
        got = Counter(self.core.take_trash())
        assert got == Counter(self.model.closed), (got, self.model.closed)
        self.model.closed = []

    # ------------------------------------------------------------------ borrowing
    def _dial_for_caller(self, ok: bool, endpoint: str | None) -> None:
        m = self.model
        now = self._tick()
        if not ok:
            m.dialling -= 1
            self.core.dial_failed()
            m.grant_capacity()
            return
        conn = FakeConn()
        slot = self.core.dialled(conn, now)
        slot.endpoint = endpoint
        m.dialling -= 1
        m.new(conn, endpoint, now)
        m.borrows += 1
        self.mine.append(conn)

    @rule(ok=st.sampled_from([True, True, True, False]), endpoint=st.integers(0, 3))
    def borrow(self, ok: bool, endpoint: int) -> None:
        m = self.model
        self._check_trash()  # what earlier steps of a compound rule closed
        now = self._tick()
        try:
            got: object = self.core.acquire(now)
        except PoolClosedError:
            assert m.is_closed
            return
        except PoolExhaustedError:
            got = None
        # connections found past their lifetime on the way were closed
        for conn, reason in self.core.take_trash():
            r = m.conns[conn]
            assert reason == "lifetime" and r.idle and now >= r.expires
            m.close(conn, "lifetime")
            m.closed.pop()
        idle = m.idle()
        if isinstance(got, Slot):
            r = m.conns[got.conn]
            assert not m.waiters and r.idle and now < r.expires
            r.idle = False
            m.borrows += 1
            self.mine.append(got.conn)
        elif got is None:
            assert not self.block and not idle and m.open + m.dialling >= m.max
        elif got is DIAL:
            assert not m.waiters and not idle and m.open + m.dialling < m.max
            m.dialling += 1
            self._dial_for_caller(ok, self.endpoints[endpoint % len(self.endpoints)])
        else:
            assert got is WAIT and self.block and not idle
            assert m.waiters or m.open + m.dialling >= m.max
            w = FakeWaiter()
            self.core.enqueue(w, now)
            m.waiters.append(w)
        m.sample()

    @rule(n=st.integers(2, 6), ok=st.booleans(), endpoint=st.integers(0, 3))
    def crowd(self, n: int, ok: bool, endpoint: int) -> None:
        """Several callers at once: peaks, the cap and waiters."""
        for i in range(n):
            self.borrow(ok or i % 3 != 2, endpoint + i)

    @precondition(lambda self: self.mine)
    @rule(data=st.data(), reusable=st.sampled_from([True, True, True, False]))
    def release(self, data: st.DataObject, reusable: bool) -> None:
        conn = data.draw(st.sampled_from(self.mine))
        self.mine.remove(conn)
        now = self._tick()
        assert self.core.release(conn, now, reusable)
        if reusable:
            self.model.give_back(conn, now)
        else:
            self.model.close(conn, "error")
        self.model.sample()

    @precondition(lambda self: self.mine)
    @rule()
    def lull(self) -> None:
        """Every caller gives its connection back."""
        for conn in list(self.mine):
            self.mine.remove(conn)
            now = self._tick()
            assert self.core.release(conn, now)
            self.model.give_back(conn, now)
            self.model.sample()

    @precondition(lambda self: self.mine)
    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(self.mine))
        self.mine.remove(conn)
        self.core.discard(conn, "error")
        self.model.close(conn, "error")

    @precondition(lambda self: self.model.granted)
    @rule(ok=st.sampled_from([True, True, False]), endpoint=st.integers(0, 3))
    def waiter_collects(self, ok: bool, endpoint: int) -> None:
        w = self.model.granted.pop(0)
        assert w.woken == 1
        try:
            got = self.core.finish_wait(w, self._tick())
        except PoolClosedError:
            return
        if got is DIAL:
            self._dial_for_caller(ok, self.endpoints[endpoint % len(self.endpoints)])
        else:
            assert isinstance(got, Slot) and not self.model.conns[got.conn].idle
            self.mine.append(got.conn)

    @precondition(lambda self: self.model.waiters)
    @rule()
    def waiter_times_out(self) -> None:
        w = self.model.waiters[-1]
        try:
            self.core.finish_wait(w, self._tick())
            raise AssertionError("a waiter that was granted nothing must time out")
        except PoolTimeoutError:
            pass
        self.model.waiters.remove(w)

    # ---------------------------------------------------------------- maintenance
    def _maintain(self, now: float) -> None:
        m = self.model
        need = self.core.maintain(now)
        assert need == m.maintain(now), (need, m.dialling)
        self.refills += need
        self._check_trash()
        assert self.core.next_maintenance == m.due, (self.core.next_maintenance, m.due)
        # maintenance never leaves itself due (or every release would run it again)
        assert self.core.next_maintenance > now
        event(f"maintain: refill {min(need, 2)}+")

    @rule()
    def maintain_now(self) -> None:
        """The shell runs maintenance whenever it likes (``pool.maintain()``)."""
        self._maintain(self._tick())

    @precondition(lambda self: self.refills)
    @rule(ok=st.sampled_from([True, True, False]), endpoint=st.integers(0, 3))
    def refill_dial_done(self, ok: bool, endpoint: int) -> None:
        """One of the refill dials maintenance asked for completes (or fails)."""
        m = self.model
        self.refills -= 1
        now = self._tick()
        m.dialling -= 1
        if not ok:
            self.core.dial_failed()
            m.grant_capacity()
            return
        conn = FakeConn()
        name = self.endpoints[endpoint % len(self.endpoints)]
        m.new(conn, name, now)
        slot = self.core.dialled_idle(conn, now)
        slot.endpoint = name
        m.give_back(conn, now)

    @rule(seconds=st.sampled_from([0.05, 0.3, 0.9, 2.0]))
    def advance(self, seconds: float) -> None:
        """Time passes; maintenance runs whenever it is due (the timer looks every PERIOD)."""
        m = self.model
        end = round(self.now + seconds, 6)
        while self.now < end:
            self.now = min(end, round(self.now + PERIOD, 6))
            now = self.now
            if now >= self.core.next_maintenance:
                self._maintain(now)
            # right after a due maintenance ran: nothing idle is past a deadline
            for r in m.conns.values():
                if r.idle:
                    assert now < r.expires, "an idle connection outlived its lifetime"
                    if m.policy is Policy.LIFO and m.timeout is not None and m.open > m.min_idle:
                        assert r.released + m.timeout > now, "idle past idle_timeout"
            assert now < m.window_end or m.timeout is None or m.policy is Policy.LIFO or m.is_closed
            self._short()
            if self.short_since is not None:
                assert now - self.short_since < _REFILL_RETRY + PERIOD, "below min_idle too long"

    @precondition(lambda self: self.model.timeout is not None)
    @rule(windows=st.integers(1, 2), borrowers=st.integers(0, 3))
    def quiet_windows(self, windows: int, borrowers: int) -> None:
        """A peak is over: every caller gives its connection back, then a lighter load of
        ``borrowers`` callers (borrow, release) runs through one or two idle timeouts."""
        timeout = self.model.timeout
        assert timeout is not None
        if self.mine:
            self.lull()
        for _ in range(windows * 4):
            for _ in range(borrowers):
                self.borrow(True, borrowers)
            if self.mine:
                self.lull()
            self.advance(round(timeout / 4 + 0.01, 6))

    @precondition(lambda self: not self.model.is_closed)
    @rule(dice=st.integers(0, 19))
    def close(self, dice: int) -> None:
        """Close the pool (rarely: a closed pool ends the interesting part of a run)."""
        if not dice:
            self.core.close()
            self._closed()

    def _closed(self) -> None:
        m = self.model
        m.is_closed = True
        for c in m.idle():
            m.close(c, "closed")
        for w in m.waiters:
            assert isinstance(w.error, PoolClosedError)
        m.waiters = []
        m.due = INF

    # ----------------------------------------------------------------- invariants
    def _short(self) -> None:
        if not self.model.could_dial_short():
            self.short_since = None
        elif self.short_since is None:
            self.short_since = self.now

    @invariant()
    def agrees_with_the_model(self) -> None:
        core, m = self.core, self.model
        m.sample()
        self._check_trash()
        assert core.open_count == m.open
        assert core.dialling == m.dialling
        assert core.waiting == len(m.waiters)
        assert {s.conn for s in core.idle_slots()} == set(m.idle())
        assert core.idle_count == len(m.idle())
        assert core.open_count + core.dialling <= m.max
        assert not (m.waiters and m.idle()), "a connection idle while callers wait"
        assert core.next_maintenance == m.due, (core.next_maintenance, m.due)

    @invariant()
    def maintenance_never_later_than_a_deadline(self) -> None:
        """First principles, independent of how the model computes ``due``."""
        m, due = self.model, self.core.next_maintenance
        if m.is_closed:
            return
        for r in m.conns.values():
            if r.idle:
                assert due <= r.expires
                if m.policy is Policy.LIFO and m.timeout is not None and m.open > m.min_idle:
                    assert due <= r.released + m.timeout
        if m.timeout is not None and m.policy is not Policy.LIFO:
            assert due <= m.window_end
        self._short()
        if self.short_since is not None:
            assert due <= self.short_since + _REFILL_RETRY


TestLifecycleMachine = LifecycleMachine.TestCase
TestLifecycleMachine.settings = settings(
    max_examples=budget(400), stateful_step_count=50, deadline=None
)


# ------------------------------------------------------------------ the three named mutants


def _fifo(**kw: object) -> PoolCore[FakeConn]:
    return PoolCore(
        make_config(policy="fifo", max_connections=16, idle_timeout=1.0, **kw),  # type: ignore[arg-type]
        now=0.0,
    )


def _window(
    idle: int, peak: int, broken: int = 0, endpoints: list[str] | None = None
) -> tuple[PoolCore[FakeConn], list[FakeConn], list[str]]:
    """A FIFO pool whose demand window starts (at 1.0) with ``idle`` idle connections (on
    ``endpoints``, if given); ``peak`` callers borrow at once and give them back, the last
    ``broken`` unusable. Returns the pool, the connections and the reasons of what the window's
    end (2.0) closed."""
    core = _fifo()
    conns = dial_new(core, idle, 0.0)
    for conn, endpoint in zip(conns, endpoints or [None] * idle, strict=True):
        core.slot_of(conn).endpoint = endpoint  # type: ignore[union-attr]
        core.release(conn, 0.0)
    core.maintain(1.0)  # the first window (it began with an empty pool) closes nothing
    held = [core.acquire(1.1) for _ in range(peak)]
    for i, slot in enumerate(held):
        assert isinstance(slot, Slot)
        core.release(slot.conn, 1.2, reusable=i < peak - broken)
    core.take_trash()
    core.maintain(2.0)
    return core, conns, [r for _, r in core.take_trash()]


def test_demand_victims_come_from_the_most_crowded_endpoint() -> None:
    """Four connections on p0, three on p1, two on p2, one spare: it goes from p0 (taking it from
    a less crowded endpoint would widen the gap between p0 and the rest)."""
    core, _, closed = _window(9, 8, endpoints=["p0"] * 4 + ["p1"] * 3 + ["p2"] * 2)
    assert closed == ["demand"]
    assert Counter(s.endpoint for s in core.slots()) == {"p0": 3, "p1": 3, "p2": 2}


def test_demand_window_low_water_mark_is_exact() -> None:
    """Five idle, a peak of three in the window: exactly two are closed, three remain."""
    core, _, closed = _window(5, 3)
    assert closed == ["demand", "demand"] and core.open_count == 3


def test_closes_in_the_window_count_against_the_spare_connections() -> None:
    """Ten open, a peak of five, then the five that served it break: the five idle ones were
    spare at the peak but are needed now — demand closes none of them (before the fix it closed
    all five, leaving nothing for a load it had just seen)."""
    core, _, closed = _window(10, 5, broken=5)
    assert closed == [] and core.open_count == 5


def test_each_close_in_the_window_is_one_spare_connection_less() -> None:
    """Ten open, a peak of three (seven spare), then two of the three break: five are closed."""
    core, _, closed = _window(10, 3, broken=2)
    assert closed == ["demand"] * 5 and core.open_count == 3


def test_min_idle_refill_counts_dials_in_flight() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(min_idle=3, max_connections=8), now=0.0)
    assert core.maintain(0.0) == 3
    assert core.maintain(0.1) == 0  # three dials in flight already: none more
    core.dialled_idle(FakeConn(), 0.2)
    core.dial_failed()
    assert core.maintain(0.3) == 1  # one in flight, one open, one failed: dial one


def test_a_failed_refill_is_retried_without_other_deadlines() -> None:
    """No idle timeout, no lifetime: a refill dial that fails must still be retried soon (before
    the fix nothing was due again, ever, so a lazily maintained pool stayed below min_idle)."""
    core: PoolCore[FakeConn] = PoolCore(make_config(min_idle=1, max_connections=4), now=0.0)
    assert core.maintain(0.0) == 1
    core.dial_failed()
    assert core.next_maintenance <= _REFILL_RETRY
    assert core.maintain(core.next_maintenance) == 1


def test_an_idle_connection_dialled_after_maintenance_still_expires_on_time() -> None:
    """Maintenance ran with no connection open (nothing due); a connection dialled and released
    later must bring the next maintenance forward to its lifetime (before the fix it stayed idle
    past it until someone borrowed it)."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_lifetime=10.0, lifetime_jitter=0.0, max_connections=4), now=0.0
    )
    core.maintain(0.0)
    assert core.next_maintenance == INF
    (conn,) = dial_new(core, 1, 1.0)
    core.release(conn, 2.0)
    assert core.next_maintenance == 11.0
    core.maintain(11.0)
    assert core.take_trash() == [(conn, "lifetime")]


def test_lifo_at_min_idle_is_not_maintained_on_every_release() -> None:
    """LIFO with min_idle: connections idle past idle_timeout at the floor cannot be pruned;
    maintenance must not stay due (before the fix every release ran it again)."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="lifo", min_idle=2, idle_timeout=1.0, max_connections=4), now=0.0
    )
    for conn in dial_new(core, 2, 0.0):
        core.release(conn, 0.0)
    core.maintain(5.0)
    assert core.next_maintenance > 5.0 and core.open_count == 2
    # a third connection lifts the pool above the floor: idle pruning is due again
    held = [core.acquire(6.0), core.acquire(6.0)]
    (extra,) = dial_new(core, 1, 6.0)
    assert core.next_maintenance <= 7.0
    for slot in held:
        assert isinstance(slot, Slot)
        core.release(slot.conn, 6.0)
    core.release(extra, 6.0)
    core.maintain(7.0)
    assert [r for _, r in core.take_trash()] == ["idle"] and core.open_count == 2


def test_demand_never_widens_the_spread_when_the_crowded_endpoint_is_busy() -> None:
    """p0's three connections are all in use, p1 has two idle and spare: closing one would make
    the spread 2; the pool keeps it."""
    core = _fifo()
    conns = dial_new(core, 5, 0.0)
    for i, conn in enumerate(conns):
        core.slot_of(conn).endpoint = "p0" if i < 3 else "p1"  # type: ignore[union-attr]
    for conn in conns[3:]:
        core.release(conn, 0.0)
    core.maintain(1.0)
    core.maintain(2.0)  # a window with no borrows: p1's two were spare throughout
    assert core.take_trash() == []
    assert Counter(s.endpoint for s in core.slots()) == {"p0": 3, "p1": 2}


def test_demand_keeps_min_idle() -> None:
    """A window with no borrows at all lets the pool fall to min_idle, not below."""
    core = _fifo(min_idle=2)
    for conn in dial_new(core, 4, 0.0):
        core.release(conn, 0.0)
    core.maintain(1.0)
    core.maintain(2.0)
    assert [r for _, r in core.take_trash()] == ["demand", "demand"]
    assert core.open_count == 2


def test_demand_ties_between_endpoints_go_to_the_oldest_connection() -> None:
    """p0 and p1 hold two each and all four are spare: the first victim is the oldest connection
    (p0's), then p1's oldest, then p0's other one."""
    core = _fifo()
    conns = dial_new(core, 4, 0.0)
    for i, conn in enumerate(conns):
        core.slot_of(conn).endpoint = f"p{i // 2}"  # type: ignore[union-attr]
        core.release(conn, 0.0)
    core.maintain(1.0)
    core.maintain(2.0)  # no borrows: the pool may empty
    assert [c for c, _ in core.take_trash()] == [conns[0], conns[2], conns[1], conns[3]]


def test_demand_may_take_from_a_middle_endpoint_within_the_spread() -> None:
    """p0 holds four (in use), p1 three (idle), p2 two (in use): the spread is 2; one of p1's may
    go (the spread stays 2), a second may not (it would become 3)."""
    core = _fifo()
    conns = dial_new(core, 9, 0.0)
    for i, conn in enumerate(conns):
        core.slot_of(conn).endpoint = "p0" if i < 4 else "p1" if i < 7 else "p2"  # type: ignore[union-attr]
    for conn in conns[4:7]:
        core.release(conn, 0.0)
    core.maintain(1.0)
    core.maintain(2.0)
    assert [c for c, _ in core.take_trash()] == [conns[4]]
    assert Counter(s.endpoint for s in core.slots()) == {"p0": 4, "p1": 2, "p2": 2}


def test_a_refill_dial_goes_to_a_caller_waiting_meanwhile() -> None:
    """A refill dial completes after the pool filled up with callers: the oldest waiter gets it,
    borrowed (its release puts it back like any other)."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(min_idle=2, max_connections=2, block=True), now=0.0
    )
    assert core.maintain(0.0) == 2
    first = FakeConn()
    core.dialled_idle(first, 0.1)
    assert core.acquire(0.2) is not WAIT  # takes the idle one
    assert core.acquire(0.3) is WAIT  # the cap: one open, one dialling
    waiter = FakeWaiter()
    core.enqueue(waiter, 0.3)
    second = FakeConn()
    slot = core.dialled_idle(second, 0.4)
    assert waiter.slot is slot and slot.in_use and core.stats().in_use == 2
    assert core.release(second, 0.5) and core.stats().idle == 1


def test_when_maintenance_is_next_due() -> None:
    """The schedule's rules one at a time (docs/design.md, "When maintenance is next due")."""
    lifo: PoolCore[FakeConn] = PoolCore(
        make_config(policy="lifo", idle_timeout=1.0, max_connections=4), now=0.0
    )
    a, b = dial_new(lifo, 2, 0.0)
    lifo.maintain(0.5)  # both borrowed: the idle deadline runs from now
    assert lifo.next_maintenance == 1.5
    lifo.release(a, 0.7)
    lifo.maintain(0.8)  # a is idle since 0.7
    assert lifo.next_maintenance == 1.7
    lifo.release(b, 0.9)
    # at min_idle and not below it: nothing due
    floor: PoolCore[FakeConn] = PoolCore(make_config(min_idle=1, max_connections=2), now=0.0)
    assert floor.next_maintenance == _REFILL_RETRY  # below min_idle: look again soon
    assert floor.maintain(0.0) == 1
    floor.dialled_idle(FakeConn(), 0.1)
    floor.maintain(0.2)
    assert floor.next_maintenance == INF
