"""I/O-free parts of the observability: histogram buckets, snapshots, the ``name`` setting,
``repr(pool)`` and the figures the exporters publish."""

from __future__ import annotations

import gc
import math

import pytest

import fairpool
import fairpool.asyncio
from fairpool.config import make_config
from fairpool.metrics import labelled, registered
from fairpool.metrics.figures import breakdowns, gauge
from fairpool.metrics.histogram import BUCKETS, Histogram, HistogramSnapshot
from fairpool.stats import PoolStats


def test_buckets_are_increasing_and_documented() -> None:
    assert list(BUCKETS) == sorted(set(BUCKETS))
    assert BUCKETS[0] == 0.0001 and BUCKETS[-1] == 60.0 and len(BUCKETS) == 18


@pytest.mark.parametrize("i", range(len(BUCKETS)))
def test_bucket_edges_are_inclusive(i: int) -> None:
    """A value equal to a bound lands in that bound's bucket (Prometheus' ``le``); the next
    float above it in the next bucket."""
    h = Histogram()
    bound = BUCKETS[i]
    h.observe(bound)
    h.observe(math.nextafter(bound, math.inf))
    h.observe(math.nextafter(bound, 0.0))
    counts = h.snapshot().counts
    assert counts[i] == 2 and counts[i + 1] == 1 and sum(counts) == 3


def test_zero_and_overflow() -> None:
    h = Histogram()
    h.observe(0.0)
    h.observe(61.0)
    snap = h.snapshot()
    assert snap.counts[0] == 1 and snap.counts[-1] == 1 and len(snap.counts) == len(BUCKETS) + 1
    assert snap.sum == 61.0 and snap.max == 61.0 and snap.count == 2
    assert list(snap.cumulative())[-1] == (math.inf, 2)
    assert next(iter(snap.cumulative())) == (BUCKETS[0], 1)


def test_window_max_and_all_time_max() -> None:
    h = Histogram()
    h.observe(2.0)
    h.window_max = 0.0  # what stats(reset=True) does
    h.observe(1.0)
    assert h.snapshot().max == 2.0 and h.snapshot(window=True).max == 1.0
    h.observe(3.0)
    assert h.snapshot().max == 3.0 and h.snapshot(window=True).max == 3.0


def test_snapshot_minus_and_as_dict() -> None:
    h = Histogram()
    h.observe(0.125)
    base = h.snapshot()
    h.observe(0.5)
    h.observe(0.5)
    delta = h.snapshot().minus(base, 0.5)
    assert delta.count == 2 and delta.sum == 1.0 and delta.max == 0.5
    d = delta.as_dict()
    assert d["buckets"]["0.25"] == 0 and d["buckets"]["0.5"] == 2 and d["buckets"]["+Inf"] == 2
    assert (d["count"], d["sum"], d["max"]) == (2, 1.0, 0.5)
    assert HistogramSnapshot().count == 0


def test_stats_as_dict_has_histograms_and_window() -> None:
    pool = fairpool.ConnectionPool(port=1, name="dict")
    d = pool.stats().as_dict()
    assert d["wait_histogram"]["count"] == 0 and "+Inf" in d["hold_histogram"]["buckets"]
    assert d["window"]["borrows"] == 0 and d["window"]["seconds"] >= 0.0
    assert (d["leaks"], d["sheds"], d["drains"]) == (0, 0, 0)


# ------------------------------------------------------------------------------- name


def test_name_default_is_unique() -> None:
    a, b = make_config().name, make_config().name
    assert a.startswith("fairpool-") and b.startswith("fairpool-") and a != b


@pytest.mark.parametrize(
    ("value", "exc"),
    [("", ValueError), ("x" * 201, ValueError), ("a\nb", ValueError), (3, TypeError)],
)
def test_name_is_validated(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="fairpool setting 'name' must be a non-empty string"):
        make_config(name=value)  # type: ignore[arg-type]


def test_name_from_url_and_both_shells() -> None:
    assert fairpool.ConnectionPool.from_url("redis://h:1/0?name=cache").config.name == "cache"
    assert fairpool.asyncio.ConnectionPool(name="acache").config.name == "acache"
    assert make_config(name="x" * 200).name == "x" * 200


def test_registry_is_weak_and_labels_are_unique() -> None:
    a = fairpool.ConnectionPool(port=1, name="reg-test")
    b = fairpool.asyncio.ConnectionPool(port=1, name="reg-test")
    assert a in registered() and b in registered()
    # The pool made last keeps the name (it takes over the series), whatever the order given.
    assert [label for label, _ in labelled([a, b])] == ["reg-test#2", "reg-test"]
    assert [label for label, _ in labelled([b, a])] == ["reg-test", "reg-test#2"]
    del a, b
    gc.collect()
    assert not [p for p in registered() if p.config.name == "reg-test"]


# ------------------------------------------------------------------------------- repr


@pytest.mark.parametrize("shell", [fairpool.ConnectionPool, fairpool.asyncio.ConnectionPool])
def test_repr(shell: type) -> None:
    pool = shell(host="10.0.0.1", port=6380, db=2, password="hunter2", name="r", max_connections=7)
    text = repr(pool)
    conn = pool.connection_class
    assert text.startswith(
        f"<{shell.__module__}.{shell.__qualname__}(<{conn.__module__}.{conn.__qualname__}("
    )  # redis-py's form first (its tests parse it)
    assert "password=<REDACTED>" in text and "port=6380" in text
    assert text.endswith(
        ")>)> name='r' policy=fifo max_connections=7 "
        "idle=0 in_use=0 waiting=0 endpoints=[10.0.0.1:6380] db=2"
    )
    assert "hunter2" not in text


def test_repr_lists_every_endpoint_and_unix_and_ipv6() -> None:
    pool = fairpool.ConnectionPool(endpoints=["h1:1", "h2:2", "[::1]:3"], policy="lifo")
    assert "endpoints=[h1:1, h2:2, [::1]:3]" in repr(pool) and "policy=lifo" in repr(pool)
    unix = fairpool.ConnectionPool.from_url("unix:///tmp/r.sock")
    assert "endpoints=[unix:///tmp/r.sock]" in repr(unix)
    pool.shutdown()
    assert repr(pool).endswith(" closed")


# ------------------------------------------------------------------------------- figures


def test_figures_of_a_snapshot() -> None:
    s = PoolStats(
        policy="fifo",
        max_connections=4,
        idle=1,
        in_use=2,
        dialling=1,
        waiting=3,
        created=4,
        closed={"idle": 2},
        borrows=10,
        hits=6,
        misses=4,
        waits=3,
        wait_time_total=1.5,
        wait_time_max=0.75,
        timeouts=1,
        endpoint_borrows={"a:1": 3, "b:1": 1},
        endpoint_connections={"a:1": 2, "b:1": 1},
    )
    assert dict(breakdowns(s, "connections")) == {"idle": 1, "in_use": 2, "dialling": 1}
    assert dict(breakdowns(s, "connections_closed")) == {"idle": 2}
    assert dict(breakdowns(s, "endpoint_share")) == {"a:1": 0.75, "b:1": 0.25}
    assert dict(breakdowns(s, "endpoint_borrows")) == {"a:1": 3, "b:1": 1}
    assert dict(breakdowns(s, "endpoint_connections")) == {"a:1": 2, "b:1": 1}
    assert gauge(s, "endpoint_fairness_jain", "") == s.endpoint_fairness.jain == 16 / 20
    assert gauge(s, "endpoint_fairness_max_mean", "") == 1.5
    assert gauge(s, "waiting", "waiting") == 3.0
