"""Workflows: orchestration and side effects, in order, with clean-up on failure."""
