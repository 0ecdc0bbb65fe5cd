"""deployctl: LLM serving on RTX 4090 workstations, planned, rendered, run and checked."""

__version__ = "0.1.0"
