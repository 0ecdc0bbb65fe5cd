"""Render a Plan into a stack directory, and drive `docker compose` on it."""
