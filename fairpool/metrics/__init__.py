"""Metrics fed by fairpool's pools. :mod:`fairpool.metrics.redispy`: redis-py's own
OpenTelemetry instruments (connection counts, wait and create times), reported by both pools as
redis-py's pools report them."""
