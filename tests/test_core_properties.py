"""Property-based tests of the I/O-free core against a small reference model.

Hypothesis drives any sequence of borrow / dial / release / discard / wait / timeout / cancel /
close / misuse, by several callers with turns (``turn_borrows``) and callers the shell cannot name
(``owner=None``, as the asyncio shell), with connections reaching ``max_lifetime`` and maintenance
taking the idle connections out for I/O (``take_idle`` / ``put_back``) while others go on, and
checks after every step that the core keeps its
caps, never hands one connection to two borrowers, never loses or duplicates an idle connection,
closes exactly what the model closes, serves waiters in arrival order (a held connection goes back
only to its own caller, and to the oldest waiter as soon as anyone else touches the pool), and hands
idle connections out in exactly the order each policy defines.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fairpool.config import Policy, make_config
from fairpool.core import DIAL, WAIT, PoolCore, Slot, Waiter
from fairpool.errors import PoolClosedError, PoolExhaustedError, PoolTimeoutError

from .helpers import FakeConn, budget, dial_new

POLICIES = [Policy.LIFO, Policy.FIFO, Policy.ROUND_ROBIN]
OWNERS = st.none() | st.integers(1, 3)  # None: a caller the shell does not name (no turns)
DIAL_OK = st.sampled_from([True, True, True, False])  # a dial fails one time in four


class FakeWaiter(Waiter):
    __slots__ = ("name", "woken")

    def __init__(self, name: int) -> None:
        super().__init__()
        self.woken = 0
        self.name = name

    def wake(self) -> None:
        self.woken += 1


class Model:
    """The reference: plain lists, obviously right."""

    def __init__(
        self,
        policy: Policy,
        max_connections: int,
        max_idle: int | None,
        turn: int,
        lifetime: float | None,
    ) -> None:
        self.policy = policy
        self.lifetime = lifetime
        self.expires: dict[FakeConn, float] = {}
        self.released: dict[FakeConn, float] = {}  # when each idle connection was last released
        self.max = max_connections
        self.max_idle = max_idle
        self.turn_limit = turn
        self.turn: dict[FakeConn, int] = {}  # borrows in a row by its current caller
        self.held: tuple[FakeConn, int, float] | None = None  # (conn, owner, since): a turn
        self.reborrows = 0
        self.idle: list[FakeConn] = []  # in release order
        self.in_use: set[FakeConn] = set()
        self.seq: dict[FakeConn, int] = {}
        self.next_seq = 0
        self.cursor = -1
        self.dialling = 0
        self.waiters: list[FakeWaiter] = []  # arrival order, not yet granted
        self.closed: list[FakeConn] = []
        self.is_closed = False

    @property
    def open(self) -> int:
        return len(self.idle) + len(self.in_use)

    def handout_order(self) -> list[FakeConn]:
        if self.policy is Policy.LIFO:
            return list(reversed(self.idle))
        if self.policy is Policy.FIFO:
            return list(self.idle)
        ring = sorted(self.idle, key=self.seq.__getitem__)
        after = [c for c in ring if self.seq[c] > self.cursor]
        return after + [c for c in ring if self.seq[c] <= self.cursor]

    def expired(self, conn: FakeConn, now: float) -> bool:
        if now >= self.expires[conn]:
            event("expired")
            return True
        return False

    def take_next(self, now: float) -> FakeConn | None:
        """The next idle connection in hand-out order; expired ones met on the way are closed."""
        for conn in self.handout_order():
            self.idle.remove(conn)
            self.cursor = self.seq[conn]
            if self.expired(conn, now):
                self.closed.append(conn)
                continue
            self.in_use.add(conn)
            self.turn[conn] = 1
            return conn
        return None

    def add(self, conn: FakeConn, now: float) -> None:
        self.expires[conn] = now + self.lifetime if self.lifetime is not None else float("inf")
        self.next_seq += 1
        self.seq[conn] = self.next_seq
        self.in_use.add(conn)
        self.cursor = self.seq[conn]
        self.turn[conn] = 1

    def give_back(
        self, conn: FakeConn, now: float, released: float | None = None
    ) -> FakeWaiter | list[FakeWaiter]:
        """A reusable connection comes back: to the oldest waiter (returned), idle, or closed
        (returns the waiters granted capacity by the close). ``released`` is when its caller
        released it (now, unless it was held for a turn since)."""
        if self.is_closed or self.expired(conn, now):
            self.in_use.discard(conn)
            self.closed.append(conn)
            return self.grant_capacity()
        if self.waiters:
            w = self.waiters.pop(0)  # the oldest waiter gets it, directly
            self.cursor = self.seq[conn]
            self.turn[conn] = 1
            return w
        self.in_use.discard(conn)
        if self.max_idle is not None and len(self.idle) >= self.max_idle:
            self.closed.append(conn)
        else:
            self.idle.append(conn)
            self.released[conn] = now if released is None else released
        return []

    def settle(self, now: float) -> FakeWaiter | list[FakeWaiter]:
        """Anyone but the holder touches the pool: the held connection goes back."""
        if self.held is None:
            return []
        conn, _owner, since = self.held
        self.held = None
        return self.give_back(conn, now, since)

    def grant_capacity(self) -> list[FakeWaiter]:
        granted = []
        while self.waiters and not self.is_closed and self.open + self.dialling < self.max:
            w = self.waiters.pop(0)
            self.dialling += 1
            granted.append(w)
        return granted


class CoreMachine(RuleBasedStateMachine):
    """Drive PoolCore and the model side by side."""

    @initialize(
        policy=st.sampled_from(POLICIES),
        block=st.sampled_from([True, True, True, False]),  # waiting is where the rules interact
        max_connections=st.integers(1, 4),
        max_idle=st.none() | st.integers(0, 5),
        turn=st.integers(1, 3),
        lifetime=st.none() | st.sampled_from([0.004, 0.015]),
    )
    def setup(
        self,
        policy: Policy,
        block: bool,
        max_connections: int,
        max_idle: int | None,
        turn: int,
        lifetime: float | None,
    ) -> None:
        self.core: PoolCore[FakeConn] = PoolCore(
            make_config(
                policy=policy,
                block=block,
                max_connections=max_connections,
                max_idle=max_idle,
                turn_borrows=turn,
                max_lifetime=lifetime,
                lifetime_jitter=0.0,
            ),
            now=0.0,
        )
        self.model = Model(policy, max_connections, max_idle, turn, lifetime)
        self.block = block
        self.now = 0.0
        self.pending_dials = 0  # DIAL grants given to the test, not yet completed
        self.granted: list[tuple[FakeWaiter, int]] = []  # woken waiters (and owner) to collect
        # connections the test's callers hold, and which caller (a connection handed to a waiter
        # belongs to that waiter until it collects it; releasing it earlier would be a double
        # release by its previous holder, which no pool can tell from a legitimate release)
        self.mine: dict[FakeConn, int] = {}
        self.waiter_owner: dict[FakeWaiter, int] = {}
        self.names = itertools.count()
        self.taken: list[Slot[FakeConn]] | None = None  # idle connections maintenance took out

    def _tick(self) -> float:
        self.now += 0.001
        return self.now

    def _check_trash(self) -> None:
        trash = [c for c, _reason in self.core.take_trash()]
        assert trash == self.model.closed, (trash, self.model.closed)
        self.model.closed = []

    def _granted(self, given: FakeWaiter | list[FakeWaiter], conn: FakeConn | None) -> None:
        """Record what the model says a give-back did: a waiter got ``conn`` directly (check the
        core did the same), or waiters were granted capacity to dial."""
        if isinstance(given, FakeWaiter):
            assert given.slot is not None and given.slot.conn is conn and given.woken == 1
            self.granted.append((given, self.waiter_owner.pop(given)))
        else:
            self.granted.extend((w, self.waiter_owner.pop(w)) for w in given)

    def _take(self, conn: FakeConn, owner: int) -> None:
        """``owner`` now holds ``conn``: nobody else may."""
        assert conn not in self.mine, "one connection handed to two borrowers"
        self.mine[conn] = owner

    def _settled(self, now: float) -> None:
        """The core just handled a call by someone other than the holder: mirror the settle."""
        held = self.model.held
        self._granted(self.model.settle(now), held[0] if held else None)

    # ---------------------------------------------------------------- rules
    @rule(dial_ok=DIAL_OK, owner=OWNERS)
    def borrow(self, dial_ok: bool, owner: int | None) -> None:
        m = self.model
        held = m.held
        now = self._tick()
        try:
            got: Slot[FakeConn] | object = self.core.acquire(now, owner)
        except PoolClosedError:
            assert m.is_closed and held is None
            return
        except PoolExhaustedError:
            got = None
        if (
            held is not None
            and owner is not None
            and held[1] == owner
            and not m.expired(held[0], now)
        ):
            # its turn: the connection it just released comes straight back
            event("reborrow")
            assert isinstance(got, Slot) and got.conn is held[0]
            m.held = None
            m.turn[held[0]] += 1
            m.reborrows += 1
            self._take(held[0], owner)
            return
        self._settled(now)
        assert not m.is_closed
        idle = m.take_next(now) if not m.waiters else None
        if got is None:
            assert idle is None and not self.block and m.open + m.dialling >= m.max
        elif isinstance(got, Slot):
            assert got.conn is idle
            self._take(got.conn, owner)
        elif got is DIAL:
            assert idle is None and not m.waiters and m.open + m.dialling < m.max
            m.dialling += 1
            self._complete_dial(dial_ok, owner)
        else:
            assert got is WAIT and self.block and idle is None
            assert m.waiters or m.open + m.dialling >= m.max
            w = FakeWaiter(next(self.names))
            self.core.enqueue(w, self.now)
            m.waiters.append(w)
            self.waiter_owner[w] = owner

    @rule(owners=st.lists(OWNERS, min_size=2, max_size=8), dial_ok=DIAL_OK)
    def crowd(self, owners: list[int | None], dial_ok: bool) -> None:
        """Several borrows in a row: reaches the cap, waiters and turns far more often."""
        for owner in owners:
            self.borrow(dial_ok, owner)

    @precondition(lambda self: self.mine)
    @rule(
        data=st.data(),
        loops=st.integers(1, 4),
        pause=st.sampled_from([0.0, 0.0, 0.0005, 0.003]),
        between=st.sampled_from([None, None, "discard", "misuse"]),
    )
    def tight_loop(
        self, data: st.DataObject, loops: int, pause: float, between: str | None
    ) -> None:
        """A caller's loop: release, then borrow again (its turn, if others wait) at once or after
        a pause in which the keeper did not run; meanwhile another caller may discard its
        connection, or misuse the pool (neither ends the turn)."""
        conn = data.draw(st.sampled_from(sorted(self.mine, key=lambda c: c.id)))
        owner = self.mine[conn]
        for _ in range(loops):
            self.release_conn(conn, True)
            others = sorted(self.mine, key=lambda c: c.id)
            if between == "discard" and others:
                self.discard_conn(data.draw(st.sampled_from(others)), "error")
            elif between == "misuse":
                self.misuse(self.model.held[0] if self.model.held else None, None)
            self.now += pause
            before = set(self.mine)
            self.borrow(True, owner)
            got = [c for c in self.mine if c not in before]
            if not got:  # it queued (or failed to dial): the loop ends here
                return
            conn = got[0]

    @precondition(lambda self: self.mine)
    @rule()
    def lull(self) -> None:
        """Every caller gives its connection back (idle connections pile up)."""
        for conn in sorted(self.mine, key=lambda c: c.id):
            self.release_conn(conn, True)

    def _complete_dial(self, ok: bool, owner: int | None) -> None:
        m = self.model
        m.dialling -= 1
        if ok:
            conn = FakeConn()
            now = self._tick()
            slot = self.core.dialled(conn, now)
            assert slot.conn is conn and slot.in_use
            m.add(conn, now)
            self._take(conn, owner)
        else:
            self.core.dial_failed()
            self._granted(m.grant_capacity(), None)

    @precondition(lambda self: self.mine)
    @rule(data=st.data(), reusable=st.booleans())
    def release(self, data: st.DataObject, reusable: bool) -> None:
        conn = data.draw(st.sampled_from(sorted(self.mine, key=lambda c: c.id)))
        self.release_conn(conn, reusable)

    def release_conn(self, conn: FakeConn, reusable: bool) -> None:
        m = self.model
        owner = self.mine.pop(conn)
        now = self._tick()
        assert self.core.release(conn, now, reusable, owner)
        self._settled(now)
        if not reusable or m.is_closed:
            m.in_use.discard(conn)
            m.closed.append(conn)
            self._granted(m.grant_capacity(), None)
        elif (
            owner is not None
            and m.waiters
            and m.turn[conn] < m.turn_limit
            and not m.expired(conn, now)
        ):
            m.held = (conn, owner, now)  # kept for its caller's next borrow
            event("hold")
            assert self.core.held is not None and self.core.held.conn is conn
        else:
            self._granted(m.give_back(conn, now), conn)

    @precondition(lambda self: self.mine)
    @rule(data=st.data(), reason=st.sampled_from(["error", "health_check"]))
    def discard(self, data: st.DataObject, reason: str) -> None:
        """The shell found a borrowed connection unusable (its check failed, it cannot reconnect):
        closed, its capacity goes to the oldest waiter; a turn in progress is not touched."""
        self.discard_conn(data.draw(st.sampled_from(sorted(self.mine, key=lambda c: c.id))), reason)

    def discard_conn(self, conn: FakeConn, reason: str) -> None:
        m = self.model
        del self.mine[conn]
        self.core.discard(conn, reason)
        m.in_use.discard(conn)
        m.closed.append(conn)
        self._granted(m.grant_capacity(), None)

    @precondition(lambda self: self.taken is None and self.model.idle)
    @rule()
    def maintenance_takes_idle(self) -> None:
        """Maintenance takes every idle connection out for I/O outside the lock."""
        m = self.model
        slots = self.core.take_idle()
        assert [s.conn for s in slots] == m.handout_order()
        m.in_use.update(m.idle)
        m.idle = []
        self.taken = slots

    @precondition(lambda self: self.taken is not None)
    @rule()
    def maintenance_puts_back(self) -> None:
        """... and gives them back: callers that queued meanwhile first, in hand-out order; the
        rest become idle again where their last release puts them (FIFO and LIFO order idle
        connections by last release, the ring by creation), among any released meanwhile."""
        m = self.model
        slots, self.taken = self.taken, None
        assert slots is not None
        order = [s.conn for s in slots]
        now = self._tick()
        event(f"put back {min(len(order), 2)}+ {m.policy.value}, waiters: {bool(m.waiters)}")
        event(f"put back, closed: {m.is_closed}")
        self.core.put_back(slots, now)
        back = []
        for conn in order:
            if m.waiters or m.is_closed or m.expired(conn, now):
                self._granted(m.give_back(conn, now), conn)
            else:
                back.append(conn)
        if not back:
            return
        if m.policy is not Policy.ROUND_ROBIN:
            back += m.idle  # re-placed with them, by last release
            m.in_use.update(m.idle)
            m.idle = []
        for conn in sorted(back, key=m.released.__getitem__):
            self._granted(m.give_back(conn, now, m.released[conn]), conn)

    @precondition(lambda self: self.model.held is not None or self.model.lifetime is not None)
    @rule(wait=st.sampled_from([0.0005, 0.002, 0.01]))
    def hold_expires(self, wait: float) -> None:
        """Time passes without the holder coming back (the shell's keeper calls expire_hold);
        connections may reach their lifetime."""
        m = self.model
        self.now += wait
        handed = self.core.expire_hold(self.now, 0.005)
        held = m.held
        assert handed == (held is not None and self.now - held[2] >= 0.005)
        if handed:
            self._settled(self.now)

    @precondition(lambda self: self.granted)
    @rule(dial_ok=DIAL_OK)
    def waiter_collects(self, dial_ok: bool) -> None:
        w, owner = self.granted.pop(0)
        assert w.woken == 1
        got = self.core.finish_wait(w, self._tick())
        if w.error is not None:  # pragma: no cover - finish_wait raised above
            return
        if got is DIAL:
            self._complete_dial(dial_ok, owner)
        else:
            assert isinstance(got, Slot) and got.conn in self.model.in_use
            self._take(got.conn, owner)

    @precondition(lambda self: self.model.waiters)
    @rule(data=st.data(), dial_ok=DIAL_OK)
    def waiter_times_out(self, data: st.DataObject, dial_ok: bool) -> None:
        m = self.model
        w = data.draw(st.sampled_from(m.waiters))
        assert w.woken == 0
        owner = self.waiter_owner[w]
        got: Slot[FakeConn] | object = None
        now = self._tick()
        try:
            got = self.core.finish_wait(w, now)
        except PoolTimeoutError as exc:
            assert "max_connections" in str(exc)
        self._settled(now)  # a held connection went on first, to the oldest waiter
        if got is not None:
            # This waiter was the oldest: it got the held connection after all, or — if that had
            # reached its lifetime and was closed — the capacity to dial one.
            self.granted.remove((w, owner))
            if got is DIAL:
                self._complete_dial(dial_ok, owner)
            else:
                assert isinstance(got, Slot)
                self._take(got.conn, owner)
            return
        m.waiters.remove(w)
        del self.waiter_owner[w]

    @precondition(lambda self: self.model.waiters)
    @rule(data=st.data())
    def waiter_cancelled(self, data: st.DataObject) -> None:
        m = self.model
        w = data.draw(st.sampled_from(m.waiters))
        now = self._tick()
        assert self.core.cancel_wait(w, now) is None
        m.waiters.remove(w)
        del self.waiter_owner[w]
        self._settled(now)  # a held connection goes on to the next waiter

    @rule(owner=OWNERS, dice=st.integers(0, 3))
    def foreign_release(self, owner: int | None, dice: int) -> None:
        if not dice:  # one draw in four: it never changes anything
            self.misuse(None, owner)

    @precondition(lambda self: self.model.idle or self.model.held or self.taken)
    @rule(data=st.data(), owner=OWNERS)
    def double_release(self, data: st.DataObject, owner: int | None) -> None:
        """A connection released already (idle, held for a turn, or taken out for maintenance
        I/O) is released or discarded again."""
        m = self.model
        released = m.idle + ([m.held[0]] if m.held else []) + [s.conn for s in self.taken or ()]
        self.misuse(data.draw(st.sampled_from(released)), owner)

    def misuse(self, conn: FakeConn | None, owner: int | None) -> None:
        """Releasing (or discarding) a connection nobody has borrowed — ``conn`` released already,
        or a foreign one — changes nothing."""
        conn = conn or FakeConn()
        assert not self.core.release(conn, self._tick(), True, owner)
        self.core.discard(conn, "error")

    @rule(dice=st.integers(0, 9))
    def close(self, dice: int) -> None:
        """Close the pool (one draw in ten: closing early would end most runs in a dead pool)."""
        if dice:
            return
        m = self.model
        self.core.close()
        if not m.is_closed:
            m.is_closed = True
            self._settled(float("inf"))
            order = self.model.handout_order()
            m.closed.extend(order)
            m.idle = []
            for w in m.waiters:
                assert isinstance(w.error, PoolClosedError) and w.woken == 1
            m.waiters = []
        assert sorted(c.id for c, _ in self.core.trash) == sorted(c.id for c in m.closed)
        m.closed = [c for c, _ in self.core.trash]  # order of closing idle ones is free

    # ----------------------------------------------------------- invariants
    @invariant()
    def consistent(self) -> None:
        core, m = self.core, self.model
        self._check_trash()
        assert core.open_count + core.dialling <= m.max
        assert core.dialling == m.dialling
        assert core.open_count == m.open
        idle = [s.conn for s in core.idle_slots()]
        assert idle == m.handout_order()
        assert len(set(idle)) == len(idle) == core.idle_count
        in_use = {s.conn for s in core.slots() if s.in_use}
        assert in_use == m.in_use
        assert not in_use & set(idle)
        assert core.waiting == len(m.waiters)
        assert (core.held.conn if core.held else None) == (m.held[0] if m.held else None)
        assert core.reborrows == m.reborrows
        st_ = core.stats()
        assert st_.idle == len(m.idle) and st_.in_use == len(m.in_use)
        assert st_.borrows == st_.hits + st_.misses


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(max_examples=budget(500), stateful_step_count=60, deadline=None)


# ------------------------------------------------------------------ distribution


def _pool_with(policy: Policy, n: int) -> tuple[PoolCore[FakeConn], list[FakeConn]]:
    core: PoolCore[FakeConn] = PoolCore(make_config(policy=policy, max_connections=n), now=0.0)
    conns = dial_new(core, n, 0.0)
    for conn in conns:
        core.release(conn, 0.0)
    return core, conns


@pytest.mark.parametrize("policy", POLICIES)
@given(n=st.integers(1, 12), borrows=st.integers(0, 200))
def test_sequential_use_distribution(policy: Policy, n: int, borrows: int) -> None:
    """Sequential borrow+release over n idle connections: FIFO and round-robin counts differ by at
    most one; LIFO keeps using one connection."""
    core, conns = _pool_with(policy, n)
    counts = dict.fromkeys(conns, 0)
    for i in range(borrows):
        slot = core.acquire(float(i))
        assert isinstance(slot, Slot)
        counts[slot.conn] += 1
        core.release(slot.conn, float(i))
    if policy is Policy.LIFO:
        assert sum(1 for c in counts.values() if c) <= 1
    else:
        assert max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("policy", [Policy.FIFO, Policy.ROUND_ROBIN])
@given(
    n=st.integers(1, 8),
    schedule=st.lists(st.tuples(st.booleans(), st.integers(0, 100)), max_size=300),
)
def test_no_idle_connection_starves(
    policy: Policy, n: int, schedule: list[tuple[bool, int]]
) -> None:
    """Under any interleaving of borrows and releases (a generated concurrent schedule), FIFO and
    round-robin never leave an idle connection unused for more than n borrows."""
    core, conns = _pool_with(policy, n)
    held: list[FakeConn] = []
    idle_since: dict[FakeConn, int] = dict.fromkeys(conns, 0)  # borrow count when it became idle
    borrows = 0
    for do_borrow, pick in schedule:
        if do_borrow and len(held) < n:
            slot = core.acquire(0.0)
            assert isinstance(slot, Slot)
            borrows += 1
            del idle_since[slot.conn]
            held.append(slot.conn)
            for conn, since in idle_since.items():
                assert borrows - since < n, f"{conn} idle through {borrows - since} borrows"
        elif held:
            conn = held.pop(pick % len(held))
            core.release(conn, 0.0)
            idle_since[conn] = borrows


def test_lifo_concentrates_fifo_spreads_exact_sequences() -> None:
    """Exact hand-out sequences (as SQLAlchemy's pool tests do)."""
    for policy, expected in [
        (Policy.LIFO, [3, 3, 3, 3]),
        (Policy.FIFO, [1, 2, 3, 1]),
        (Policy.ROUND_ROBIN, [1, 2, 3, 1]),
    ]:
        core, conns = _pool_with(policy, 3)
        seen = []
        for _ in range(4):
            slot = core.acquire(0.0)
            assert isinstance(slot, Slot)
            seen.append(conns.index(slot.conn) + 1)
            core.release(slot.conn, 0.0)
        assert seen == expected, policy


def test_round_robin_differs_from_fifo_under_concurrency() -> None:
    """Round-robin follows the ring, not release order: release 3 then 1; FIFO hands out 3 first,
    round-robin continues after the last one handed out."""
    results = {}
    for policy in (Policy.FIFO, Policy.ROUND_ROBIN):
        core, conns = _pool_with(policy, 3)
        a = core.acquire(0.0)
        b = core.acquire(0.0)
        c = core.acquire(0.0)
        assert isinstance(a, Slot) and isinstance(b, Slot) and isinstance(c, Slot)
        core.release(c.conn, 0.0)
        core.release(a.conn, 0.0)
        nxt = core.acquire(0.0)
        assert isinstance(nxt, Slot)
        results[policy] = conns.index(nxt.conn) + 1
    assert results == {Policy.FIFO: 3, Policy.ROUND_ROBIN: 1}


# ------------------------------------------------------------------ waiter fairness


@given(n_waiters=st.integers(1, 30), cap=st.integers(1, 4))
def test_waiters_served_in_arrival_order(n_waiters: int, cap: int) -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(block=True, max_connections=cap), now=0.0)
    held = dial_new(core, cap, 0.0)
    waiters = []
    for i in range(n_waiters):
        assert core.acquire(float(i)) is WAIT
        w = FakeWaiter(i)
        core.enqueue(w, float(i))
        waiters.append(w)
    served = []
    t = float(n_waiters)
    while held:
        conn = held.pop(0)
        core.release(conn, t)
        # a newcomer arriving now must not overtake the queue
        if core.waiting:
            assert core.acquire(t) is WAIT
            late = FakeWaiter(-1)
            core.enqueue(late, t)
            assert core.cancel_wait(late, t) is None
        for w in waiters:
            if w.woken and w not in served:
                served.append(w)
                slot = core.finish_wait(w, t)
                assert isinstance(slot, Slot)
                held.append(slot.conn)
        t += 1
    assert [w.name for w in served] == list(range(n_waiters))
    st_ = core.stats()
    assert st_.waits == n_waiters and st_.timeouts == 0
    assert st_.wait_time_max >= n_waiters - 1
