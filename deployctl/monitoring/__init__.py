"""Monitoring for a stack: Prometheus scrape configuration, alert rules, Grafana dashboards, the GPU exporter.

Everything here is rendered from a Plan and the SLOs the user set, under the engine's own metric names
(engines.py, read from each engine's source at the pinned version); nothing is hand-written per stack.
"""
