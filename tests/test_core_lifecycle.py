"""Lifecycle decisions of the I/O-free core, with a fake clock: pruning (per-connection idle time
under LIFO, demand windows under FIFO / round-robin), max lifetime with jitter, min_idle refill,
suspect marking after a failed check."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairpool.config import Policy, make_config
from fairpool.core import DIAL, WAIT, PoolCore, Slot, Waiter
from fairpool.errors import PoolClosedError, PoolExhaustedError, PoolTimeoutError

from .helpers import FakeConn, borrow, budget, dial_new


def burst(core: PoolCore[FakeConn], n: int, now: float, endpoints: int = 0) -> list[FakeConn]:
    """Open n connections at once (as a burst of n concurrent callers would), then release them."""
    conns = dial_new(core, n, now)
    for i, conn in enumerate(conns):
        if endpoints:
            core.slot_of(conn).endpoint = f"proxy{i % endpoints}"  # type: ignore[union-attr]
        core.release(conn, now)
    return conns


def run_load(
    core: PoolCore[FakeConn], start: float, seconds: float, concurrency: int, step: float = 0.01
) -> tuple[float, Counter[FakeConn], list[tuple[FakeConn, str]]]:
    """Steady load: each step, `concurrency` callers borrow, then all release; maintenance runs
    lazily whenever it is due (as the shells do on release). Returns the end time, the borrows per
    connection and everything closed."""
    now = start
    uses: Counter[FakeConn] = Counter()
    closed: list[tuple[FakeConn, str]] = []
    while now < start + seconds:
        held = []
        for _ in range(concurrency):
            conn = borrow(core, now)
            uses[conn] += 1
            held.append(conn)
        for conn in held:
            core.release(conn, now)
        if now >= core.next_maintenance:
            need = core.maintain(now)
            for _ in range(need):
                core.dialled_idle(FakeConn(), now)
        trash = core.take_trash()
        assert not {c for c, _ in trash} & set(held) or all(
            core.slot_of(c) is None for c, _ in trash
        )
        closed.extend(trash)
        now = round(now + step, 6)
    return now, uses, closed


@pytest.mark.parametrize("policy", [Policy.FIFO, Policy.ROUND_ROBIN])
def test_fair_policies_shrink_by_demand_and_stay_fair(policy: Policy) -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy=policy, max_connections=64, idle_timeout=1.0), now=0.0
    )
    burst(core, 32, 0.0)
    now, _, closed = run_load(core, 0.0, 3.5, concurrency=2)
    assert core.open_count <= 4, core.open_count
    assert {reason for _, reason in closed} == {"demand"}
    # after shrinking, the remaining connections share the load evenly
    _, uses, _ = run_load(core, now, 1.0, concurrency=2)
    counts = list(uses.values())
    assert len(counts) == core.open_count and max(counts) - min(counts) <= 1


def test_lifo_shrinks_by_idle_time() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="lifo", max_connections=64, idle_timeout=1.0), now=0.0
    )
    burst(core, 32, 0.0)
    _, uses, closed = run_load(core, 0.0, 2.5, concurrency=2)
    assert core.open_count == 2
    assert {reason for _, reason in closed} == {"idle"}
    assert len(uses) == 2  # LIFO: the top of the stack did all the work


def test_demand_victims_keep_endpoints_balanced() -> None:
    """32 connections spread over 4 proxies; a load of 4 keeps one connection per proxy."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="fifo", max_connections=64, idle_timeout=1.0), now=0.0
    )
    burst(core, 32, 0.0, endpoints=4)
    run_load(core, 0.0, 3.5, concurrency=4)
    per_endpoint = Counter(s.endpoint for s in core.slots())
    assert core.open_count == 4
    assert sorted(per_endpoint.values()) == [1, 1, 1, 1], per_endpoint


def test_demand_window_keeps_what_peaks_need() -> None:
    """A short peak inside each window keeps its connections: shrinking follows demand, not the
    average."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="round_robin", max_connections=64, idle_timeout=1.0), now=0.0
    )
    burst(core, 16, 0.0)
    now = 0.0
    for _window in range(4):
        _, _, _ = run_load(core, now, 0.05, concurrency=8)  # the peak
        now, _, _ = run_load(core, now + 0.05, 0.95, concurrency=1)
    assert core.open_count == 8


@given(
    policy=st.sampled_from(list(Policy)),
    min_idle=st.integers(0, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["borrow", "release", "tick", "maintain"]), st.integers(0, 50)),
        max_size=200,
    ),
)
@settings(max_examples=budget(200), deadline=None)
def test_pruning_never_touches_in_use_nor_goes_below_min_idle(
    policy: Policy, min_idle: int, ops: list[tuple[str, int]]
) -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(
            policy=policy,
            max_connections=8,
            min_idle=min_idle,
            idle_timeout=1.0,
            max_lifetime=5.0,
        ),
        now=0.0,
        rng=random.Random(7).random,
    )
    now = 0.0
    held: list[FakeConn] = []
    for op, arg in ops:
        if op == "borrow" and len(held) < 8:
            held.append(borrow(core, now))
        elif op == "release" and held:
            core.release(held.pop(arg % len(held)), now)
        elif op == "tick":
            now += arg / 10
        elif op == "maintain":
            before = core.open_count
            need = core.maintain(now)
            trash = core.take_trash()
            assert not {c for c, _ in trash} & set(held), "pruned a connection in use"
            pruned = [c for c, reason in trash if reason in ("idle", "demand")]
            if pruned:
                assert core.open_count >= min(min_idle, before)
            assert core.open_count + core.dialling >= min(min_idle, 8)
            for _ in range(need):
                core.dialled_idle(FakeConn(), now)
        for conn, _ in core.take_trash():
            assert conn not in held
        assert core.in_use_count == len(held)


def test_max_lifetime_with_jitter() -> None:
    values = itertools.cycle([0.0, 0.5, 0.999])
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="lifo", max_lifetime=100.0, lifetime_jitter=0.1, max_connections=10),
        now=0.0,
        rng=lambda: next(values),
    )
    conns = burst(core, 3, 0.0)
    expiries = sorted(core.slot_of(c).expires for c in conns)  # type: ignore[union-attr]
    assert expiries == pytest.approx([90.01, 95.0, 100.0])
    # found idle at borrow time (LIFO pops the two shortest-lived first): retired, the next used
    got = core.acquire(95.5)
    assert isinstance(got, Slot) and got.expires == 100.0
    assert [reason for _, reason in core.take_trash()] == ["lifetime", "lifetime"]
    # retired on release
    core.release(got.conn, 100.0)
    assert core.take_trash() == [(got.conn, "lifetime")]
    assert core.stats().closed["lifetime"] == 3


def test_lifetime_jitter_spreads_expiry() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_lifetime=60.0, max_connections=50), now=0.0)
    conns = burst(core, 50, 0.0)
    expiries = [core.slot_of(c).expires for c in conns]  # type: ignore[union-attr]
    assert all(57.0 <= e <= 60.0 for e in expiries)
    assert len(set(expiries)) > 40


def test_min_idle_refill_after_pruning_and_failures() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(min_idle=3, max_connections=10, idle_timeout=1.0), now=0.0
    )
    assert core.maintain(0.0) == 3  # refill planned (dials reserved)
    assert core.dialling == 3
    for _ in range(2):
        core.dialled_idle(FakeConn(), 0.0)
    core.dial_failed()
    assert core.open_count == 2 and core.next_maintenance <= 1.0
    assert core.maintain(0.5) == 1
    core.dialled_idle(FakeConn(), 0.5)
    got = core.acquire(0.6)
    assert isinstance(got, Slot)
    core.discard(got.conn, "health_check")
    assert core.next_maintenance == -float("inf")  # a close below min_idle triggers a refill
    assert core.maintain(0.7) == 1
    core.dialled_idle(FakeConn(), 0.7)
    core.maintain(5.0)  # a long idle window never prunes below min_idle
    assert core.open_count == 3


def test_failed_check_makes_older_idle_connections_suspect() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(policy="lifo", max_connections=5), now=0.0)
    conns = burst(core, 4, 0.0)
    got = core.acquire(1.0)  # LIFO: the newest
    assert isinstance(got, Slot) and got.conn is conns[-1]
    core.discard(got.conn, "health_check")
    assert all(s.suspect for s in core.idle_slots())
    assert core.stats().closed["health_check"] == 1


def test_close_and_reasons_counted() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=5, max_idle=1), now=0.0)
    conns = dial_new(core, 3, 0.0)
    core.release(conns[0], 0.0)
    core.release(conns[1], 0.0)  # max_idle=1 already idle
    core.release(conns[2], 0.0, reusable=False)
    core.close()
    reasons = Counter(r for _, r in core.take_trash())
    assert reasons == {"max_idle": 1, "error": 1, "closed": 1}
    assert core.stats().closed_total == 3


def test_demand_shrink_keeps_one_connection_per_endpoint_while_busy() -> None:
    """Demand of 2 over 4 proxies: keeping only 2 connections would leave 2 proxies with all the
    work; the pool keeps one per proxy while there is traffic, and falls to min_idle when idle."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="round_robin", max_connections=64, idle_timeout=1.0), now=0.0
    )
    burst(core, 32, 0.0, endpoints=4)
    now, _, _ = run_load(core, 0.0, 3.5, concurrency=2)
    assert sorted(Counter(s.endpoint for s in core.slots()).values()) == [1, 1, 1, 1]
    _, uses, _ = run_load(core, now, 1.0, concurrency=2)
    per_endpoint = Counter()
    for conn, n in uses.items():
        per_endpoint[core.slot_of(conn).endpoint] += n  # type: ignore[union-attr]
    assert max(per_endpoint.values()) - min(per_endpoint.values()) <= 1
    # no traffic for whole windows: the pool empties (min_idle=0)
    core.maintain(now + 2.0)
    core.maintain(now + 3.5)
    assert core.open_count == 0


# ------------------------------------------------------------------ turns and the lifecycle


class _Waiter(Waiter):
    def wake(self) -> None:
        pass


def _held_for(owner: str, **settings: object) -> tuple[PoolCore[FakeConn], FakeConn, _Waiter]:
    """A pool of one connection, held for ``owner``'s turn while a waiter queues."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, **settings),  # type: ignore[arg-type]
        now=0.0,
        rng=lambda: 0.0,
    )
    (conn,) = dial_new(core, 1, 0.0)
    waiter = _Waiter()
    assert core.acquire(0.0, "other") is WAIT
    core.enqueue(waiter, 0.0)
    assert core.release(conn, 1.0, True, owner)
    assert core.held is not None and core.held.conn is conn and waiter.slot is None
    return core, conn, waiter


def test_an_expired_held_connection_is_not_handed_back() -> None:
    core, conn, waiter = _held_for("me", max_lifetime=10.0, lifetime_jitter=0.0)
    assert core.acquire(10.5, "me") is WAIT  # past its lifetime: retired, the turn is over
    assert [(c, r) for c, r in core.take_trash()] == [(conn, "lifetime")]
    assert waiter.dial  # the freed capacity goes to the oldest waiter


def test_discard_of_a_held_connection_is_ignored() -> None:
    core, conn, waiter = _held_for("me")
    core.discard(conn, "health_check")
    assert core.held is not None and not core.trash
    assert core.expire_hold(2.0, 0.005)
    assert waiter.slot is not None and waiter.slot.conn is conn
    assert core.stats().in_use == 1 and core.stats().open == 1


def test_a_timing_out_oldest_waiter_gets_the_held_connection() -> None:
    core, conn, waiter = _held_for("me")
    got = core.finish_wait(waiter, 1.001)
    assert isinstance(got, Slot) and got.conn is conn and core.held is None
    assert core.stats().timeouts == 0


def test_expire_hold_waits_for_the_grace() -> None:
    core, _conn, waiter = _held_for("me")
    assert not core.expire_hold(1.004, 0.005) and core.held is not None
    assert core.expire_hold(1.006, 0.005) and waiter.slot is not None
    core, _conn, waiter = _held_for("me")  # released at 1.0
    assert not core.expire_hold(1.25, 0.5)
    assert core.expire_hold(1.5, 0.5) and waiter.slot is not None  # the grace is over at 1.5


def test_a_held_connection_left_idle_keeps_its_release_time() -> None:
    """The only waiter gives up: the connection held for its owner becomes idle as released by
    the owner at 1.0 (what idle pruning and the LIFO / FIFO order go by), not at 3.0."""
    core, conn, waiter = _held_for("me")
    assert core.cancel_wait(waiter, 3.0) is None
    slot = core.slot_of(conn)
    assert slot is not None and not slot.in_use and slot.released == 1.0
    assert [s.conn for s in core.idle_slots()] == [conn]


def test_tokens_name_themselves() -> None:
    assert (repr(DIAL), repr(WAIT)) == ("DIAL", "WAIT")


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize(("waiters", "meanwhile"), [(0, False), (2, False), (0, True)])
def test_idle_taken_for_io_come_back_in_hand_out_order(
    policy: Policy, waiters: int, meanwhile: bool
) -> None:
    """``take_idle`` / ``put_back`` (disconnect, re-auth outside the lock): callers that queued
    meanwhile get the connections the policy would have handed out first, oldest waiter first;
    the rest are idle again where their last release puts them, also among connections
    released meanwhile."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy=policy, max_connections=5 if meanwhile else 4, block=True), now=0.0
    )
    c = dial_new(core, 4, 0.0)
    for i, conn in enumerate([c[2], c[0], c[3], c[1]]):
        core.release(conn, 1.0 + i)
    got = core.acquire(5.0)
    assert isinstance(got, Slot)
    core.release(got.conn, 5.5)  # ... and released last
    # FIFO hands out the least recently released (c2), LIFO the most recently released (c1),
    # round-robin the first after the last handed out (c3, dialled last: so c0)
    assert got.conn is c[{Policy.FIFO: 2, Policy.LIFO: 1, Policy.ROUND_ROBIN: 0}[policy]]
    expected = {
        Policy.FIFO: [c[0], c[3], c[1], c[2]],
        Policy.LIFO: [c[1], c[3], c[0], c[2]],
        Policy.ROUND_ROBIN: [c[1], c[2], c[3], c[0]],
    }[policy]
    taken = core.take_idle()
    assert [s.conn for s in taken] == expected and core.stats().idle == 0
    queued = [_Waiter() for _ in range(waiters)]
    for w in queued:
        assert core.acquire(6.0) is WAIT  # all four are out: the cap is reached
        core.enqueue(w, 6.0)
    if meanwhile:  # a caller dials a fifth connection and releases it during the I/O
        (c4,) = dial_new(core, 1, 6.0)
        core.release(c4, 6.5)
    # while taken out they can be neither released nor discarded (a second release is misuse)
    open_before = core.stats().open
    assert not core.release(expected[0], 6.8)
    core.discard(expected[0], "error")
    assert core.stats().open == open_before and not core.trash
    assert all(w.slot is None for w in queued)
    core.put_back(taken, 7.0)
    assert [w.slot.conn for w in queued if w.slot is not None] == expected[:waiters]
    idle = [s.conn for s in core.idle_slots()]
    assert core.idle_count == len(idle) == core.stats().idle
    if not meanwhile:
        assert idle == expected[waiters:]
    elif policy is Policy.FIFO:
        assert idle == [*expected, c4]  # released last, handed out last
    elif policy is Policy.LIFO:
        assert idle == [c4, *expected]  # released last, handed out first
    else:
        assert idle == [c[0], c[1], c[2], c[3], c4]  # the ring after c4 (dialled last)
    # they keep their old "last used" time (maintenance must not make them look fresh)
    assert all(s.released < 7.0 for s in core.idle_slots())


def test_another_callers_discard_leaves_the_turn_alone() -> None:
    """A connection failing its check elsewhere frees capacity for the oldest waiter (it dials);
    the connection held for a turn stays its owner's."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=2, block=True), now=0.0)
    mine, other = dial_new(core, 2, 0.0)
    waiter = _Waiter()
    assert core.acquire(0.0, "someone") is WAIT
    core.enqueue(waiter, 0.0)
    assert core.release(mine, 1.0, True, "me") and core.held is not None
    core.discard(other, "health_check")
    assert waiter.dial and waiter.slot is None
    assert [c for c, _ in core.take_trash()] == [other]
    got = core.acquire(1.001, "me")
    assert isinstance(got, Slot) and got.conn is mine and core.stats().reborrows == 1


def test_retire_idle_and_reserve_dial_for_the_shells_own_maintenance() -> None:
    """Rebalancing (the sync shell's endpoints) closes one chosen idle connection and dials a
    replacement: only an idle connection is retired; a dial is reserved only below the cap, with
    nobody waiting and the pool open."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=3, block=True), now=0.0)
    a, b, c = dial_new(core, 3, 0.0)
    core.release(a, 0.0)
    slot_a, slot_b = core.slot_of(a), core.slot_of(b)
    assert slot_a is not None and slot_b is not None
    assert not core.reserve_dial()  # at the cap
    assert not core.retire_idle(slot_b, "rebalance")  # in use
    assert core.retire_idle(slot_a, "rebalance")
    assert not core.retire_idle(slot_a, "rebalance")  # gone already
    assert core.take_trash() == [(a, "rebalance")] and core.stats().closed["rebalance"] == 1
    core.release(c, 0.0, reusable=False)
    core.take_trash()
    assert core.reserve_dial() and core.reserve_dial() and core.dialling == 2
    assert not core.reserve_dial()  # the cap counts the reserved dials
    core.dial_failed()
    assert core.acquire(0.1) is DIAL
    assert core.acquire(0.1) is WAIT
    core.enqueue(_Waiter(), 0.1)
    core.dial_failed()  # the capacity goes to the waiter
    assert not core.reserve_dial()  # ... and a waiter's claim comes first anyway
    closed: PoolCore[FakeConn] = PoolCore(make_config(max_connections=2), now=0.0)
    closed.close()
    assert not closed.reserve_dial()


def test_slot_repr() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=2), now=0.0)
    (conn,) = dial_new(core, 1, 0.0)
    slot = core.slot_of(conn)
    assert repr(slot) == "<Slot #1 in_use ? borrows=1>"
    assert slot is not None
    slot.endpoint = "10.0.0.1:6379"
    core.release(conn, 0.0)
    assert repr(slot) == "<Slot #1 idle 10.0.0.1:6379 borrows=1>"


def test_stats_per_endpoint_count_closed_connections_borrows() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(policy="fifo", max_connections=4), now=0.0)
    conns = dial_new(core, 4, 0.0)
    for conn, endpoint in zip(conns, ["p0", "p0", None, "p0"], strict=True):
        core.slot_of(conn).endpoint = endpoint  # type: ignore[union-attr]
    core.release(conns[3], 0.0, reusable=False)  # 1 borrow on p0, closed
    for conn in conns[:3]:
        core.release(conn, 0.0)
    for _ in range(3):  # FIFO: each borrowed once more
        got = core.acquire(1.0)
        assert isinstance(got, Slot)
        core.release(got.conn, 1.0)
    got = core.acquire(2.0)  # the first p0 connection again: 3 borrows, then it breaks
    assert isinstance(got, Slot) and got.conn is conns[0]
    core.release(got.conn, 2.0, reusable=False)
    st_ = core.stats()
    assert st_.endpoint_borrows == {"p0": 6}
    assert st_.endpoint_connections == {"p0": 1}


@pytest.mark.parametrize("policy", list(Policy))
def test_put_back_after_close_expiry_or_twice(policy: Policy) -> None:
    """Connections taken out for I/O come back to a pool that was closed meanwhile (closed), past
    their lifetime (closed, also exactly at it), or twice (the second time changes nothing); the
    others are usable again."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy=policy, max_connections=4, max_lifetime=10.0, lifetime_jitter=0.0),
        now=0.0,
        rng=lambda: 0.0,
    )
    old = dial_new(core, 2, 0.0)
    (young,) = dial_new(core, 1, 5.0)
    for conn in [*old, young]:
        core.release(conn, 6.0)
    taken = core.take_idle()
    core.put_back(taken, 10.0)  # exactly the lifetime of the two old ones
    assert sorted(c.id for c, r in core.take_trash() if r == "lifetime") == sorted(
        c.id for c in old
    )
    assert [s.conn for s in core.idle_slots()] == [young] and core.idle_count == 1
    core.put_back(taken, 10.5)  # again: nothing changes
    assert not core.trash and core.idle_count == 1 and core.open_count == 1
    got = core.acquire(11.0)
    assert isinstance(got, Slot) and got.conn is young and not got.taken
    assert core.release(young, 11.0)
    taken = core.take_idle()
    core.close()
    core.put_back(taken, 12.0)
    assert core.take_trash() == [(young, "closed")] and core.open_count == 0


def test_put_back_skips_a_closed_slot_and_goes_on() -> None:
    """A slot in the list that is no longer the pool's does not stop the others coming back."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=4), now=0.0)
    conns = dial_new(core, 2, 0.0)
    for conn in conns:
        core.release(conn, 0.0)
    taken = core.take_idle()
    stranger = Slot(FakeConn(), 99, 0.0, float("inf"))
    stranger.taken = True
    core.put_back([stranger, *taken], 1.0)
    assert {s.conn for s in core.idle_slots()} == set(conns) and core.idle_count == 2


def test_stats_snapshot_every_field() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="round_robin", max_connections=3, block=True), now=0.0
    )
    a, b = dial_new(core, 2, 0.0)
    core.slot_of(a).endpoint = "p0"  # type: ignore[union-attr]
    assert core.acquire(0.0) is DIAL  # a third, still dialling
    assert core.acquire(0.0) is WAIT
    first = _Waiter()
    core.enqueue(first, 1.0)
    core.release(a, 3.5)  # handed to the waiter after 2.5 s
    assert first.slot is not None
    for t in (4.0, 4.5):  # two callers give up after a second
        assert core.acquire(t) is WAIT
        waiter = _Waiter()
        core.enqueue(waiter, t)
        with pytest.raises(PoolTimeoutError, match=r"waited 1\.000s"):
            core.finish_wait(waiter, t + 1.0)
    assert core.acquire(5.0) is WAIT
    second = _Waiter()
    core.enqueue(second, 5.0)
    core.release(b, 5.0, reusable=False)  # its capacity goes to the second waiter: it dials
    assert core.finish_wait(second, 6.0) is DIAL
    st_ = core.stats()
    expected = {
        "policy": "round_robin",
        "max_connections": 3,
        "idle": 0,
        "in_use": 1,
        "dialling": 2,
        "waiting": 0,
        "created": 2,
        "closed": {**dict.fromkeys(st_.closed, 0), "error": 1},
        "borrows": 3,
        "hits": 1,
        "misses": 2,
        "waits": 4,
        "wait_time_total": 5.5,
        "wait_time_max": 2.5,
        "timeouts": 2,
        "reborrows": 0,
        "endpoint_borrows": {"p0": 2},
        "endpoint_connections": {"p0": 1},
    }
    assert {k: v for k, v in st_.as_dict().items() if k in expected} == expected


def test_closing_fails_waiters_with_a_clear_message() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=1, block=True), now=0.0)
    dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is WAIT
    waiter = _Waiter()
    core.enqueue(waiter, 0.0)
    core.close()
    with pytest.raises(PoolClosedError) as info:
        core.finish_wait(waiter, 1.0)
    assert str(info.value) == "fairpool: the connection pool was closed"


def test_a_connection_released_at_its_lifetime_is_not_held() -> None:
    """Released by its owner exactly when its lifetime ends, while someone waits: it is closed
    (not held for a turn), and the waiter gets the capacity."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, max_lifetime=10.0, lifetime_jitter=0.0),
        now=0.0,
    )
    (conn,) = dial_new(core, 1, 0.0)
    assert core.acquire(5.0, "other") is WAIT
    waiter = _Waiter()
    core.enqueue(waiter, 5.0)
    assert core.release(conn, 10.0, True, "me")
    assert core.held is None and core.holds == 0 and waiter.dial
    assert core.take_trash() == [(conn, "lifetime")]


def test_holds_are_counted() -> None:
    core, conn, _waiter = _held_for("me")
    assert core.holds == 1
    got = core.acquire(1.001, "me")
    assert isinstance(got, Slot) and got.conn is conn
    assert core.release(conn, 1.002, True, "me")  # the turn goes on (turn_borrows=4)
    assert core.holds == 2


def test_error_messages_name_the_cause() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=2, block=False), now=0.0)
    dial_new(core, 2, 0.0)
    with pytest.raises(PoolExhaustedError) as exhausted:
        core.acquire(0.0)
    assert str(exhausted.value) == (
        "Too many connections: fairpool pool exhausted, all 2 connections in use "
        "(max_connections); pass block=True to wait for one"
    )
    core.close()
    with pytest.raises(PoolClosedError) as closed:
        core.acquire(0.0)
    assert str(closed.value) == "fairpool: the connection pool is closed"


def test_turns_and_counters_step_by_step() -> None:
    """turn_borrows=2 on one connection: every borrow route (dial, idle, reborrow in a turn,
    hand-off to a waiter) counts one borrow and one hit or miss, and starts or continues the
    turn that decides whether the next release holds the connection."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, turn_borrows=2), now=0.0
    )
    (conn,) = dial_new(core, 1, 0.0)
    slot = core.slot_of(conn)
    assert slot is not None and (slot.borrows, slot.turn) == (1, 1)
    core.release(conn, 0.1)
    assert core.acquire(0.2, "me") is slot and (slot.borrows, slot.turn) == (2, 1)
    first = _Waiter()
    assert core.acquire(0.3, "other") is WAIT
    core.enqueue(first, 0.3)
    assert core.release(conn, 0.4, True, "me") and core.held is slot  # turn 1 of 2: held
    assert core.acquire(0.5, "me") is slot and (slot.borrows, slot.turn) == (3, 2)
    assert core.release(conn, 0.6, True, "me") and core.held is None  # the turn is over
    assert first.slot is slot and (slot.borrows, slot.turn) == (4, 1)
    second = _Waiter()
    assert core.acquire(0.7, "third") is WAIT
    core.enqueue(second, 0.7)
    assert core.release(conn, 0.8, True, "other") and core.held is slot  # other's turn 1: held
    assert core.acquire(0.9, "other") is slot and (slot.borrows, slot.turn) == (5, 2)
    st_ = core.stats()
    assert (st_.borrows, st_.hits, st_.misses, st_.reborrows, core.holds) == (5, 4, 1, 2, 2)


def test_nothing_is_handed_out_at_the_end_of_its_lifetime() -> None:
    """Exactly at ``expires`` a connection is over: neither borrowed from idle nor given back in
    a turn."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=2, max_lifetime=10.0, lifetime_jitter=0.0), now=0.0
    )
    (conn,) = dial_new(core, 1, 0.0)
    core.release(conn, 1.0)
    assert core.acquire(10.0) is DIAL
    assert core.take_trash() == [(conn, "lifetime")]
    core, conn, waiter = _held_for("me", max_lifetime=10.0, lifetime_jitter=0.0)
    assert core.acquire(10.0, "me") is WAIT
    assert core.take_trash() == [(conn, "lifetime")] and waiter.dial


def test_round_robin_starts_at_the_first_connection_refilled() -> None:
    """Connections dialled by the min_idle refill were never handed out: the ring starts at the
    first of them."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="round_robin", min_idle=3, max_connections=3), now=0.0
    )
    assert core.maintain(0.0) == 3
    conns = [FakeConn() for _ in range(3)]
    for conn in conns:
        core.dialled_idle(conn, 0.1)
    assert [s.conn for s in core.idle_slots()] == conns
    assert all(s.borrows == 0 and not s.suspect for s in core.idle_slots())  # never borrowed
    got = core.acquire(0.2)
    assert isinstance(got, Slot) and got.conn is conns[0]


def test_the_clock_defaults_to_monotonic() -> None:
    before = time.monotonic()
    core: PoolCore[FakeConn] = PoolCore(make_config(policy="fifo", idle_timeout=5.0))
    assert before + 5.0 <= core.next_maintenance <= time.monotonic() + 5.0


def test_a_borrowed_connection_expiring_now_does_not_keep_maintenance_due() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=2, max_lifetime=10.0, lifetime_jitter=0.0), now=0.0
    )
    (conn,) = dial_new(core, 1, 0.0)
    assert core.next_maintenance == 10.0
    core.maintain(10.0)  # it is borrowed: closed when it comes back, nothing to do now
    assert core.next_maintenance > 10.0
    core.release(conn, 10.0)
    assert core.take_trash() == [(conn, "lifetime")]


def test_a_new_connection_record_and_a_new_waiter() -> None:
    """What the shells find on a connection the pool has just taken in, and on a new waiter."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="round_robin", min_idle=2, max_connections=2), now=0.0
    )
    assert core.maintain(0.0) == 2
    slot = core.dialled_idle(FakeConn(), 2.5)
    assert (slot.created, slot.released, slot.borrows, slot.turn) == (2.5, 2.5, 0, 0)
    assert slot.endpoint is None and slot.aux is None and slot.target is None
    assert slot.suspect is False and slot.taken is False and slot.in_use is False
    other = core.dialled_idle(FakeConn(), 2.6)
    slot.endpoint = other.endpoint = "p1"
    assert core.stats().endpoint_connections == {"p1": 2}
    waiter = _Waiter()
    assert (waiter.slot, waiter.dial, waiter.error, waiter.since, waiter.done) == (
        None,
        False,
        None,
        0.0,
        False,
    )


def test_a_dialled_connection_was_last_used_when_created() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=2), now=0.0)
    (conn,) = dial_new(core, 1, 3.0)
    slot = core.slot_of(conn)
    assert slot is not None and slot.created == slot.released == 3.0 and slot.in_use


def test_wait_time_max_of_a_short_wait() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=1, block=True), now=0.0)
    (conn,) = dial_new(core, 1, 0.0)
    assert core.acquire(0.0) is WAIT
    waiter = _Waiter()
    core.enqueue(waiter, 0.0)
    core.release(conn, 0.5)
    assert waiter.slot is not None and core.stats().wait_time_max == 0.5


# ------------------------------------------------------------------------------ the core's part
def test_broken_connection_makes_older_idle_siblings_to_its_endpoint_suspect() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=8), now=0.0)
    conns = dial_new(core, 5, 0.0)
    slots = [core.slot_of(c) for c in conns]
    for slot, endpoint in zip(slots, ["a", "a", "b", "a", "a"], strict=True):
        assert slot is not None
        slot.endpoint = endpoint
    for c in conns[:3]:
        core.release(c, 0.0)
    broken = slots[3]
    assert broken is not None
    core.broken(broken)  # a command on conns[3] failed
    assert [s.suspect for s in slots[:3]] == [True, True, False]  # older, same endpoint only
    core.release(conns[4], 0.0)
    assert slots[4] is not None and not slots[4].suspect  # newer: not suspect
    assert core.needs_check(slots[0], 0.01)  # suspect: full check even when fresh
    assert not core.needs_check(slots[2], 0.01)
    assert core.needs_check(slots[2], 0.25)  # idle for health_check_after


def test_retire_closes_idle_now_and_borrowed_on_release() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=3), now=0.0)
    a, b = dial_new(core, 2, 0.0)
    core.release(a, 0.0)
    slot_a, slot_b = core.slot_of(a), core.slot_of(b)
    assert slot_a is not None and slot_b is not None
    assert core.retire(slot_a, "rebalance") and core.open_count == 1
    assert core.retire(slot_b, "rebalance") and not core.retire(slot_b, "rebalance")
    assert core.open_count == 1  # still borrowed
    core.release(b, 1.0)
    stats = core.stats()
    assert stats.closed["rebalance"] == 2 and stats.closed["lifetime"] == 0 and stats.open == 0
    assert [reason for _, reason in core.take_trash()] == ["rebalance", "rebalance"]
    got = core.acquire(1.0)
    assert not isinstance(got, Slot)  # nothing idle: dial


def test_broken_marks_only_idle_siblings_created_before_it() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=4), now=0.0)
    conns = dial_new(core, 3, 0.0)
    slots = [core.slot_of(c) for c in conns]
    for slot in slots:
        assert slot is not None
        slot.endpoint = "a"
    core.release(conns[0], 0.0)  # idle and older
    broken = slots[1]
    assert broken is not None and slots[0] is not None and slots[2] is not None
    core.broken(broken)
    assert slots[0].suspect and not broken.suspect  # the broken one itself is not marked
    assert not slots[2].suspect  # borrowed and newer: untouched
    core.broken(slots[0])  # nothing idle is older than the oldest
    assert not slots[2].suspect


def test_needs_check_boundary_is_health_check_after() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=2, health_check_after=0.5), now=0.0
    )
    (c,) = dial_new(core, 1, 0.0)
    core.release(c, 1.0)
    slot = core.slot_of(c)
    assert slot is not None and not slot.suspect
    assert not core.needs_check(slot, 1.4999)
    assert core.needs_check(slot, 1.5)  # exactly health_check_after: checked
    slot.suspect = True
    assert core.needs_check(slot, 1.0)


def test_retire_refuses_foreign_and_retiring_connections_and_keeps_the_reason() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=4), now=0.0)
    a, b, c = dial_new(core, 3, 0.0)
    slot_a, slot_b, slot_c = core.slot_of(a), core.slot_of(b), core.slot_of(c)
    assert slot_a is not None and slot_b is not None and slot_c is not None
    assert slot_b.retire is None and slot_b.expires > 1e9
    assert core.retire(slot_b, "error")  # borrowed: marked, closed on release
    assert slot_b.retire == "error" and slot_b.expires < 0 and core.open_count == 3
    assert not core.retire(slot_b, "rebalance")  # already retiring: the first reason stays
    assert slot_b.retire == "error"
    core.release(c, 0.0)
    core.release(a, 0.0)
    assert core.retire(slot_c, "rebalance") and core.idle_count == 1  # idle: closed at once
    assert not core.retire(slot_c, "rebalance")  # no longer the pool's
    core.release(b, 1.0)
    stats = core.stats()
    assert stats.closed["error"] == 1 and stats.closed["rebalance"] == 1
    assert stats.closed["lifetime"] == 0 and stats.open == 1
    assert [r for _, r in core.take_trash()] == ["rebalance", "error"]
    assert core.acquire(2.0) is slot_a  # the remaining one is handed out as before


@pytest.mark.parametrize("block", [False, True])
def test_reserve_dial_leaves_the_last_free_place_to_callers_unless_they_wait(block: bool) -> None:
    """A pool that does not block fails a caller at the cap at once: a dial of its own (refill,
    probe, rebalancing) must not take the last free place while nothing is idle. A blocking pool's
    caller waits for that dial instead, so there it may."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=3, block=block), now=0.0)
    (a,) = dial_new(core, 1, 0.0)
    assert core.reserve_dial()  # two places free: one may go
    assert core.reserve_dial() is block  # the last one, nothing idle
    if block:
        return
    core.release(a, 0.0)  # now one is idle: a caller has something to borrow
    assert core.reserve_dial() and core.dialling == 2


def test_discard_idle_retires_only_connections_idle_since_the_snapshot_and_defers_closing() -> None:
    """A borrow met a connection the server had closed; the shell polled a snapshot of the idle
    connections taken at ``since`` and found three more with an event. Only those still idle
    since before the snapshot are retired (one borrowed meanwhile, one released after the
    snapshot, one released at its moment, one already closed and one never held are left
    alone); their closing waits in
    ``later`` — not the trash a borrow takes — until the next release moves it (or maintenance,
    or close)."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=8, min_idle=0), now=0.0)
    conns = dial_new(core, 7, 0.0)
    for c in conns[:6]:
        core.release(c, 1.0)
    core.release(conns[6], 2.0)  # released at the snapshot's moment: counts as after it
    snapshot = core.idle_slots()
    assert [s.conn for s in snapshot] == conns  # a copy, in hand-out order (FIFO)
    assert snapshot is not core.idle_slots()
    stolen = borrow(core, 2.5)  # borrowed after the snapshot: in use
    assert stolen == conns[0]
    back = borrow(core, 2.5)
    core.release(back, 2.5)  # borrowed and released after the snapshot (at 2.0)
    assert core.retire_idle(snapshot[2], "rebalance")  # closed meanwhile
    core.take_trash()
    foreign = Slot(FakeConn(), 99, 0.0, math.inf)
    queued = (FakeConn(), "idle")
    core.trash.append(queued)  # queued before: stays for the caller to close now
    n = core.discard_idle([*snapshot, foreign], 2.0, "health_check")
    assert n == 3 and core.trash == [queued]
    core.take_trash()
    assert core.later == [(c, "health_check") for c in conns[3:6]]
    assert core.idle_count == 2 and core.open_count == 3
    assert core.stats().closed["health_check"] == 3
    assert core.discard_idle(snapshot, 2.0, "health_check") == 0  # already gone
    core.flush_later()
    assert core.later == [] and core.take_trash() == [(c, "health_check") for c in conns[3:6]]
    core.flush_later()
    assert core.trash == []  # nothing deferred: nothing queued


@pytest.mark.parametrize("how", ["maintain", "close", "put_back"])
def test_deferred_closes_are_queued_by_maintenance_close_and_disconnect(how: str) -> None:
    """Deferred closes do not wait for a release that may never come: maintenance, close()
    and the return of connections taken out for I/O (disconnect()) queue them too."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=4), now=0.0)
    conns = burst(core, 2, 0.0)
    assert core.discard_idle(core.idle_slots(), 1.0, "health_check") == 2
    if how == "maintain":
        core.maintain(1.0)
    elif how == "close":
        core.close()
    else:
        core.put_back(core.take_idle(), 1.0)
    assert core.later == [] and sorted(c.id for c, _ in core.take_trash()) == [c.id for c in conns]


def test_discard_dead_retires_a_borrowed_connection_later_and_returns_the_idle_ones() -> None:
    """A borrow's readiness poll saw the end of the stream: the connection is retired (its
    older idle siblings to the same endpoint become suspect, as after any failed check), its
    closing deferred like discard_idle's, and the idle connections come back for the poll."""
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=4), now=0.0)
    a, b, c = dial_new(core, 3, 0.0)
    core.release(a, 1.0)
    core.release(b, 1.0)
    core.trash.append((FakeConn(), "idle"))  # queued before: stays for the caller to close
    idle = core.discard_dead(c)
    assert [s.conn for s in idle] == [a, b] and all(s.suspect for s in idle)
    assert core.later == [(c, "health_check")] and len(core.trash) == 1
    assert core.open_count == 2 and core.stats().closed["health_check"] == 1
    assert core.discard_dead(c) == idle  # no longer borrowed: nothing more retired
    assert len(core.later) == 1


def test_round_robin_goes_on_after_a_dial_that_lands_among_idle_connections() -> None:
    """The ring hands out the first idle connection after the one handed out last; a dial that
    completes while others sit idle is handed out last (it is the newest), so the ring goes on
    from its beginning — whatever order the cursor before it gave."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=8, policy="round_robin"), now=0.0
    )
    c = dial_new(core, 5, 0.0)  # sequence numbers 1-5
    for conn in c:
        core.release(conn, 0.0)
    assert [borrow(core, 0.0) for _ in range(5)] == c
    assert core.acquire(0.0) is DIAL  # nothing idle: a dial is reserved, and takes a while
    for conn in c[:4]:
        core.release(conn, 0.0)
    assert [borrow(core, 0.0) for _ in range(2)] == c[:2]
    core.release(c[0], 0.0)
    assert [s.conn for s in core.idle_slots()] == [c[2], c[3], c[0]]  # after the cursor (2)
    new = FakeConn()
    core.dialled(new, 0.0)  # the newest, handed out now: the ring starts over
    assert [s.conn for s in core.idle_slots()] == [c[0], c[2], c[3]]
    assert borrow(core, 0.0) == c[0]
