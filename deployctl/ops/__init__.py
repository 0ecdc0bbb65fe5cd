"""Workflows, one module each: plan, stack (up/down/status/logs), doctor, power, bundle, probes.

Each runs its steps in order, with clean-up on failure; the CLI calls one function here and prints the result.
"""
