"""Prometheus collectors, one per domain, each reading its box through a few callables (never
the whole server), plus the latency histograms fed by the result sink and the VLM providers.
``/metrics`` registers them all (``api/system.py``)."""
