"""Targets: an engine-neutral Workload (workload.py) and one renderer per target (compose.py, helm.py)."""
