"""The plans the I/O-free core hands the shells (fairpool/lifecycle.py, fairpool/slot.py, the
policies' pruning strategies), with fake connections and a fake clock: dial order over endpoints,
circuit breakers, refills that stop early, reconnects in place, probes and rebalancing steps."""

from __future__ import annotations

from typing import Any

import pytest

from fairpool.config import make_config
from fairpool.core import DIAL, WAIT, PoolCore
from fairpool.endpoints import BACKOFF_BASE, EndpointSet
from fairpool.lifecycle import (
    DIAL_ONE,
    DONE,
    JOIN,
    THROWAWAY,
    WAIT_RETIRE,
    Planner,
    staying,
)
from fairpool.slot import Slot

from .helpers import FakeConn, dial_new
from .test_core_lifecycle_model import FakeWaiter as _Waiter

A, B, C = ("a", 1), ("b", 2), ("c", 3)


def planner(
    n: int = 2, max_connections: int = 10, endpoints: bool = True, **settings: Any
) -> Planner[FakeConn]:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=max_connections, **settings), now=0.0
    )
    return Planner(core, EndpointSet([A, B, C][:n]) if endpoints else None)


def dial(p: Planner[FakeConn], now: float, for_caller: bool = True) -> Slot[FakeConn]:
    """A dial as a shell makes it: reserve, take the first target, connect."""
    if for_caller:
        assert p.core.acquire(now) is DIAL
    else:
        assert p.core.reserve_dial()
    target = p.dial_order(now)[0]
    p.dialling(target)
    return p.connected(FakeConn(), target, now, for_caller)


def test_without_endpoints_the_dial_goes_to_the_pool_address() -> None:
    p = planner(endpoints=False)
    assert p.dial_order(0.0) == [None]
    assert p.dial_order(0.0, only=A) == [None]  # no endpoints: nothing to probe
    assert p.core.acquire(0.0) is DIAL
    p.dialling(None)
    p.dial_error(None, 0.0)  # nothing to back off
    slot = p.connected(FakeConn(), None, 0.5)
    assert slot.in_use and slot.target is None and p.core.dialling == 0
    assert slot.created == 0.5 and slot.released == 0.5
    assert p.probes_due(0.0, force=True) == []
    assert p.may_reconnect(slot)
    assert p.reconnect_failed(slot, 0.0) is False
    assert p.rebalance_step([], 0.0) is DONE


def test_dials_spread_over_endpoints_in_rotation() -> None:
    p = planner(3)
    targets = [dial(p, 0.0).target for _ in range(6)]
    assert sorted(targets[:3]) == [A, B, C] and sorted(targets[3:]) == [A, B, C]
    assert staying(p.core.slots()) == targets


def test_dials_in_flight_count_for_the_spread() -> None:
    p = planner(2)
    first = p.dial_order(0.0)[0]
    p.dialling(first)  # still connecting
    second = p.dial_order(0.0)[0]
    assert second != first
    p.dial_error(first, 0.0)
    assert p.dial_order(0.0)[0] != first  # backed off


def test_a_failed_target_is_backed_off_and_tried_last() -> None:
    p = planner(2)
    assert p.core.acquire(0.0) is DIAL
    order = p.dial_order(0.0)
    p.dialling(order[0])
    p.dial_error(order[0], 0.0)
    assert p.endpoints is not None and p.endpoints.failures(order[0]) == 1
    p.dialling(order[1])
    slot = p.connected(FakeConn(), order[1], 0.0)
    assert slot.target == order[1] and slot.in_use
    assert p.dial_order(0.1) == [order[1], order[0]]
    assert p.dial_order(0.1 + BACKOFF_BASE) == [order[1], order[0]]  # half-open: after up ones
    assert p.endpoints.healthy(order[0], 0.1 + BACKOFF_BASE)


def test_a_dial_that_fails_everywhere_frees_its_capacity_for_a_waiter() -> None:
    p = planner(2, max_connections=1, block=True)
    assert p.core.acquire(0.0) is DIAL
    assert p.core.acquire(0.0) is WAIT
    waiter = _Waiter()
    p.core.enqueue(waiter, 0.0)
    for target in p.dial_order(0.0):
        p.dialling(target)
        p.dial_error(target, 0.0)
    p.dial_abandoned()
    assert waiter.dial and waiter.woken == 1  # the capacity went on to the waiter
    assert p.core.dialling == 1


def test_connected_idle_joins_the_pool_or_goes_to_a_waiter() -> None:
    p = planner(2, max_connections=2, block=True)
    slot = dial(p, 0.0, for_caller=False)
    assert not slot.in_use and p.core.idle_count == 1 and slot.target is not None
    assert p.core.acquire(0.0) is slot
    other = dial(p, 0.0)
    assert other.target != slot.target  # the other endpoint holds fewer
    assert p.core.acquire(0.0) is WAIT
    waiter = _Waiter()
    p.core.enqueue(waiter, 0.0)
    p.core.release(other.conn, 0.0)
    assert waiter.slot is other  # handed over on release
    p.core.retire(slot, "rebalance")
    p.core.release(slot.conn, 0.1)
    assert p.core.take_trash() == [(slot.conn, "rebalance")]
    assert p.core.reserve_dial() is True
    p.core.enqueue(waiter2 := _Waiter(), 0.1)
    late = p.connected(FakeConn(), A, 0.2, for_caller=False)
    assert waiter2.slot is late and late.in_use  # a dial for nobody goes to the oldest waiter


def test_refill_failed_gives_back_every_remaining_reservation() -> None:
    p = planner(endpoints=False, min_idle=3)
    need = p.core.maintain(0.0)
    assert need == 3 and p.core.dialling == 3
    p.connected(FakeConn(), None, 0.0, for_caller=False)
    p.refill_failed(2)
    assert p.core.dialling == 0 and p.core.open_count == 1
    p.refill_failed(0)
    assert p.core.dialling == 0


def test_reconnect_in_place_only_while_the_endpoint_is_up() -> None:
    p = planner(2)
    slot = dial(p, 0.0)
    assert p.may_reconnect(slot)
    assert p.reconnect_failed(slot, 1.0) is True  # with endpoints: try another connection
    assert p.endpoints is not None and p.endpoints.failures(slot.target) == 1
    assert not p.may_reconnect(slot)
    other = dial(p, 1.0)
    assert other.target != slot.target and p.may_reconnect(other)
    assert p.endpoints.failures(slot.target) == 1  # the same outage: counted once
    assert p.reconnect_failed(slot, 1.1) and p.endpoints.failures(slot.target) == 1
    assert p.reconnect_failed(slot, 1.0 + BACKOFF_BASE)  # a failure after the back-off counts
    assert p.endpoints.failures(slot.target) == 2


def test_probes_due_after_the_back_off_or_when_forced() -> None:
    p = planner(2)
    p.dialling(A)
    p.dial_error(A, 0.0)
    assert p.probes_due(0.0) == []
    assert p.probes_due(0.0, force=True) == [A]
    assert p.probes_due(BACKOFF_BASE) == [A]
    assert p.probe_plan(A) is JOIN and p.core.dialling == 1
    assert p.dial_order(BACKOFF_BASE, only=A) == [A]
    p.dialling(A)  # the probe is in flight: not due again
    assert p.probes_due(BACKOFF_BASE, force=True) == []
    p.connected(FakeConn(), A, BACKOFF_BASE, for_caller=False)
    assert p.endpoints is not None and p.endpoints.up(A)
    assert p.probes_due(10.0, force=True) == []


def test_a_probe_at_the_cap_is_thrown_away() -> None:
    p = planner(2, max_connections=1)
    dial(p, 0.0)
    p.dialling(B)
    p.dial_error(B, 0.0)
    assert p.probe_plan(B) is THROWAWAY
    assert p.probes_due(5.0, force=True) == []  # its probe is in flight
    p.probe_done(B, False, 5.0)
    assert p.endpoints is not None and p.endpoints.failures(B) == 2
    assert p.probe_plan(B) is THROWAWAY
    p.probe_done(B, True, 6.0)
    assert p.endpoints.up(B) and p.core.open_count == 1 and p.core.dialling == 0


def test_no_probe_or_rebalance_once_shut_down() -> None:
    p = planner(2)
    p.dialling(A)
    p.dial_error(A, 0.0)
    p.core.close()
    assert p.probes_due(9.0, force=True) == []
    assert p.probe_plan(A) is None
    assert p.rebalance_step([], 9.0) is DONE


def test_rebalance_uses_spare_capacity_first() -> None:
    p = planner(2)
    p.dialling(B)
    p.dial_error(B, 0.0)
    slots = [dial(p, 0.0, for_caller=False) for _ in range(4)]
    assert {s.target for s in slots} == {A}
    p.probe_plan(B)  # JOIN: reserves one
    p.dialling(B)
    p.connected(FakeConn(), B, 1.0, for_caller=False)  # B is back, with 1 against A's 4
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE
    assert p.dial_order(1.0)[0] == B
    assert p.core.dialling == 1 and p.core.open_count == 5 and not retiring
    p.dialling(B)
    p.connected(FakeConn(), B, 1.0, for_caller=False)
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE  # 4 against 2: one more
    p.dialling(B)
    p.connected(FakeConn(), B, 1.0, for_caller=False)
    assert p.rebalance_step(retiring, 1.0) is DONE  # 4 against 3
    assert p.core.stats().closed["rebalance"] == 0


def test_rebalance_at_the_cap_retires_idle_then_borrowed_connections() -> None:
    p = planner(2, max_connections=4)
    p.dialling(B)
    p.dial_error(B, 0.0)
    borrowed = dial(p, 0.0)
    idle = [dial(p, 0.0, for_caller=False) for _ in range(3)]
    assert {s.target for s in [borrowed, *idle]} == {A}
    p.endpoints.report(B, True, 1.0)  # type: ignore[union-attr]
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE
    assert p.core.stats().closed["rebalance"] == 1 and not retiring
    victim = p.core.take_trash()[0][0]
    assert victim in {s.conn for s in idle}
    assert victim is min(idle, key=lambda s: s.seq).conn  # the oldest idle one
    p.dialling(B)
    p.connected(FakeConn(), B, 1.0, for_caller=False)
    # A holds 3 (one borrowed), B 1: another move
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE
    p.dialling(B)
    p.connected(FakeConn(), B, 1.0, for_caller=False)
    assert p.rebalance_step(retiring, 1.0) is DONE  # 2 and 2


def test_rebalance_waits_for_a_borrowed_victim() -> None:
    p = planner(2, max_connections=3, block=True)
    p.dialling(B)
    p.dial_error(B, 0.0)
    a1, a2, a3 = dial(p, 0.0), dial(p, 0.0), dial(p, 0.0)
    p.endpoints.report(B, True, 1.0)  # type: ignore[union-attr]
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE
    assert retiring == [a1] and a1.retire == "rebalance"
    # while it is out no other is retired (it would be counted twice)
    assert p.rebalance_step(retiring, 1.1) is WAIT_RETIRE
    assert retiring == [a1] and a2.retire is None and a3.retire is None
    assert p.core.release(a1.conn, 1.2)
    assert p.core.take_trash() == [(a1.conn, "rebalance")]
    assert p.rebalance_step(retiring, 1.2) is DIAL_ONE and retiring == []
    p.dialling(B)
    p.connected(FakeConn(), B, 1.2)
    assert p.rebalance_step(retiring, 1.2) is DONE  # 2 and 1
    assert sorted(staying(p.core.slots())) == [A, A, B]
    del a2, a3


def test_rebalance_leaves_the_last_free_place_to_callers_when_the_pool_does_not_block() -> None:
    """Without ``block`` a caller at the cap fails at once, so a rebalancing dial must not take
    the place a retired borrowed connection freed while nothing is idle: the callers dial there
    (to the sparse endpoint), and no other connection is retired meanwhile."""
    p = planner(2, max_connections=3)
    p.dialling(B)
    p.dial_error(B, 0.0)
    a1, a2, a3 = dial(p, 0.0), dial(p, 0.0), dial(p, 0.0)
    p.endpoints.report(B, True, 1.0)  # type: ignore[union-attr]
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE and retiring == [a1]
    assert p.core.release(a1.conn, 1.1)
    assert p.core.take_trash() == [(a1.conn, "rebalance")]
    assert not p.core.reserve_dial()  # the last free place, nothing idle
    assert p.rebalance_step(retiring, 1.1) is WAIT_RETIRE and retiring == []
    assert p.rebalance_step(retiring, 1.2) is WAIT_RETIRE  # still nothing else retired
    assert a2.retire is None and a3.retire is None
    assert p.core.acquire(1.2) is DIAL and p.dial_order(1.2)[0] == B  # the caller's dial
    p.dialling(B)
    p.connected(FakeConn(), B, 1.2)
    assert p.rebalance_step(retiring, 1.3) is DONE  # 2 and 1
    # With a connection idle, callers have one to take: the place may be used.
    p.core.release(a2.conn, 1.4)
    p.core.release(p.core.slot_of(a3.conn).conn, 1.4)  # type: ignore[union-attr]
    p.core.retire(a2, "rebalance")
    p.core.take_trash()
    assert p.core.idle_count == 1 and p.core.reserve_dial()


def test_rebalance_uses_capacity_freed_while_a_move_is_under_way() -> None:
    p = planner(3, max_connections=4, block=True)
    for e in (B, C):
        p.dialling(e)
        p.dial_error(e, 0.0)
    a1, _a2, _a3, a4 = (dial(p, 0.0) for _ in range(4))
    for e in (B, C):
        p.endpoints.report(e, True, 1.0)  # type: ignore[union-attr]
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE and retiring == [a1]
    p.core.discard(a4.conn, "error")  # capacity frees elsewhere: A 2 (a1 leaving), B 0, C 0
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE
    assert retiring == []  # a1's replacement is dialled now: a1 just goes when released
    first = p.dial_order(1.0)[0]
    assert first in (B, C)
    p.dialling(first)
    p.connected(FakeConn(), first, 1.0)
    # A 2 (a1 leaving), first 1, the third 0: one more move, at the cap again
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE and retiring == [_a2]
    p.core.release(a1.conn, 1.1)
    assert p.rebalance_step(retiring, 1.1) is DIAL_ONE and retiring == []
    assert p.dial_order(1.1)[0] not in (A, first)


def test_rebalance_gives_up_when_the_crowded_endpoint_has_only_dials_in_flight() -> None:
    p = planner(2, max_connections=2, block=True)
    b = dial(p, 0.0)
    assert b.target is not None
    crowded = A if b.target == B else B
    for _ in range(3):
        p.dialling(crowded)  # counted for the spread, but there is nothing to retire
    assert p.core.reserve_dial()  # the pool at its cap
    assert p.rebalance_step([], 0.0) is DONE
    assert p.core.stats().closed["rebalance"] == 0


def test_rebalance_with_every_endpoint_down_does_nothing() -> None:
    p = planner(2)
    dial(p, 0.0)
    for e in (A, B):
        p.dialling(e)
        p.dial_error(e, 0.0)
    assert p.rebalance_step([], 0.0) is DONE
    assert p.core.dialling == 0


@pytest.mark.parametrize("policy", ["fifo", "round_robin"])
def test_fair_policies_prune_by_demand_lifo_by_age(policy: str) -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy=policy, idle_timeout=10.0, max_connections=5), now=0.0
    )
    for conn in dial_new(core, 3, 0.0):
        core.release(conn, 0.0)
    assert core.next_maintenance == 10.0  # the demand window's end
    core.maintain(5.0)
    assert core.take_trash() == []
    core.maintain(10.0)  # a window with a dial in it: all three were needed
    assert core.take_trash() == [] and core.next_maintenance == 20.0
    core.maintain(20.0)  # a whole window with three idle: not needed
    assert sorted(r for _, r in core.take_trash()) == ["demand"] * 3


def test_lifo_prunes_each_connection_by_its_idle_time_down_to_min_idle() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(policy="lifo", idle_timeout=10.0, min_idle=1, max_connections=5), now=0.0
    )
    conns = dial_new(core, 3, 0.0)
    for i, conn in enumerate(conns):
        core.release(conn, float(i))
    assert core.maintain(2.0) == 0
    assert core.next_maintenance == 10.0  # the oldest idle connection's timeout
    core.maintain(10.5)
    assert core.take_trash() == [(conns[0], "idle")]
    assert core.next_maintenance == 11.0
    core.maintain(20.0)
    assert core.take_trash() == [(conns[1], "idle")]  # not below min_idle
    assert core.open_count == 1 and core.next_maintenance > 20.0


def test_the_core_marks_fresh_connections_when_it_hands_them_out() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, health_check_after=1.0), now=10.0
    )
    assert core.acquire(10.0) is DIAL
    conn = FakeConn()
    slot = core.dialled(conn, 10.0)
    core.release(conn, 10.0)
    assert core.acquire(10.5) is slot and slot.fresh
    core.release(conn, 10.5)
    assert core.acquire(11.5) is slot and not slot.fresh  # idle for health_check_after
    core.release(conn, 11.5)
    assert core.acquire(12.4) is slot and slot.fresh  # 0.9 s: still fresh
    core.release(conn, 12.4)
    slot.suspect = True
    assert core.acquire(12.5) is slot and not slot.fresh
    slot.suspect = False
    waiter = _Waiter()
    assert core.acquire(12.6) is WAIT
    core.enqueue(waiter, 12.6)
    core.release(conn, 19.0)
    assert waiter.slot is slot and slot.fresh  # handed over as it is released
    core.release(conn, 19.0)
    core.check_after = -1.0  # a shell that checks every borrow
    assert core.acquire(19.0) is slot and not slot.fresh


def test_turns_and_borrowed_answers() -> None:
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, turn_borrows=2), now=0.0
    )
    assert not core.turn_possible
    assert core.acquire(0.0) is DIAL
    conn = FakeConn()
    slot = core.dialled(conn, 0.0)
    assert core.borrowed(conn) is slot and core.borrowed(FakeConn()) is None
    waiter = _Waiter()
    assert core.acquire(0.0) is WAIT
    core.enqueue(waiter, 0.0)
    assert core.turn_possible  # a waiter: a release may hold for its owner
    core.release(conn, 0.1, owner="me")
    assert core.held is slot and core.turn_possible
    assert core.borrowed(conn) is None  # held for its owner's turn: not releasable
    assert core.acquire(0.2, owner="me") is slot and slot.fresh
    assert core.borrowed(conn) is slot
    core.release(conn, 0.3, owner="me")  # the turn is over (2 borrows): handed to the waiter
    assert waiter.slot is slot and core.held is None and not core.turn_possible
    taken = None
    core.release(conn, 0.4)
    taken = core.take_idle()
    assert taken == [slot] and core.borrowed(conn) is None
    core.put_back(taken, 0.5)
    assert core.borrowed(conn) is None and core.idle_count == 1


def test_give_back_undoes_a_borrow_in_progress() -> None:
    core: PoolCore[FakeConn] = PoolCore(make_config(max_connections=1, block=True), now=0.0)
    assert core.acquire(0.0) is DIAL
    core.give_back(DIAL, None, 0.0)  # a dial abandoned: the capacity is free again
    assert core.dialling == 0 and core.acquire(0.0) is DIAL
    conn = FakeConn()
    slot = core.dialled(conn, 0.0)
    core.give_back(slot, None, 0.0)  # a connection abandoned before use: idle again
    assert core.idle_count == 1 and core.borrowed(conn) is None
    assert core.acquire(0.0) is slot
    waiting, granted = _Waiter(), _Waiter()
    assert core.acquire(0.0) is WAIT
    core.enqueue(waiting, 0.0)
    core.give_back(WAIT, waiting, 0.1)  # still queued: leaves the queue
    assert core.waiting == 0
    core.enqueue(granted, 0.1)
    core.release(conn, 0.2)
    assert granted.slot is slot
    core.give_back(WAIT, granted, 0.3)  # handed a connection as it gave up: back to the pool
    assert core.idle_count == 1 and core.in_use_count == 0
    core.give_back(WAIT, None, 0.3)  # nothing granted, nothing queued
    assert core.idle_count == 1 and core.dialling == 0


def test_rebalance_retires_the_crowded_endpoints_only_idle_connection_at_once() -> None:
    p = planner(2, max_connections=2, block=True)
    p.dialling(B)
    p.dial_error(B, 0.0)
    borrowed = dial(p, 0.0)
    idle = dial(p, 0.0, for_caller=False)
    assert borrowed.target == idle.target == A
    p.endpoints.report(B, True, 1.0)  # type: ignore[union-attr]
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is DIAL_ONE  # the idle one goes: its capacity is free
    assert retiring == [] and p.core.take_trash() == [(idle.conn, "rebalance")]
    assert borrowed.retire is None


def test_give_back_while_a_connection_is_held_for_a_turn() -> None:
    """A queued caller giving up while a connection is held for someone's turn: the held
    connection goes on (here to the idle set, nobody else waits) and keeps its release time."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, turn_borrows=2), now=0.0
    )
    assert core.acquire(0.0) is DIAL
    conn = FakeConn()
    slot = core.dialled(conn, 0.0)
    waiter = _Waiter()
    assert core.acquire(0.1) is WAIT
    core.enqueue(waiter, 0.1)
    core.release(conn, 0.2, owner="me")
    assert core.held is slot
    core.give_back(WAIT, waiter, 0.3)
    assert core.held is None and core.waiting == 0 and core.idle_count == 1
    assert slot.released == 0.2 and waiter.slot is None


def test_the_core_names_the_caller_only_when_a_turn_is_possible() -> None:
    """``who`` (the shell's "which thread is this?") is called only when a turn is possible: a
    release while callers wait, a borrow while a connection is held."""
    core: PoolCore[FakeConn] = PoolCore(
        make_config(max_connections=1, block=True, turn_borrows=3), now=0.0
    )
    asked: list[str] = []
    me = "me"

    def who() -> object:
        asked.append(me)
        return me

    assert core.acquire(0.0, None, who) is DIAL
    conn = FakeConn()
    slot = core.dialled(conn, 0.0)
    assert core.release(conn, 0.1, True, None, who)  # nobody waits: no turn, nobody asked
    assert asked == [] and core.idle_count == 1
    assert core.acquire(0.2, None, who) is slot and asked == []  # nothing held: not asked
    waiter = _Waiter()
    assert core.acquire(0.3) is WAIT
    core.enqueue(waiter, 0.3)
    assert core.release(conn, 0.4, True, None, who)  # a turn: held for "me"
    assert asked == ["me"] and core.held is slot
    assert core.acquire(0.5, None, who) is slot  # "me" comes back for it
    assert asked == ["me", "me"] and core.reborrows == 1
    assert core.release(conn, 0.6, True, None, who)
    me = "someone else"
    assert core.acquire(0.7, None, who) is WAIT  # not the owner: the held one goes on
    assert waiter.slot is slot and core.held is None
    assert core.release(conn, 0.8, True, "explicit", who)  # an owner given: who() not asked
    assert asked == ["me", "me", "me", "someone else"]


def test_a_retired_connection_that_goes_to_a_waiter_completes_its_move() -> None:
    """Under load (callers waiting) no dial can be reserved: a retired connection's capacity goes
    to the oldest waiter, who dials the sparse endpoint; the next step drops it from the moves
    under way and plans afresh (another move, here)."""
    p = planner(2, max_connections=4, block=True)
    p.dialling(B)
    p.dial_error(B, 0.0)
    a1, a2, a3, a4 = (dial(p, 0.0) for _ in range(4))
    p.endpoints.report(B, True, 1.0)  # type: ignore[union-attr]
    waiter = _Waiter()
    assert p.core.acquire(1.0) is WAIT
    p.core.enqueue(waiter, 1.0)
    retiring: list[Slot[FakeConn]] = []
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE and retiring == [a1]
    assert p.rebalance_step(retiring, 1.0) is WAIT_RETIRE and retiring == [a1]  # still out
    p.core.release(a1.conn, 1.1)
    assert waiter.dial  # its capacity went to the waiter, who dials
    assert p.dial_order(1.1)[0] == B
    p.dialling(B)  # the waiter's dial, in flight
    assert p.rebalance_step(retiring, 1.2) is WAIT_RETIRE
    assert retiring == [a2]  # A 3 against B 1 (in flight): one more move
    del a3, a4
