"""Renderers from a plan to a deployment target (Compose, Helm)."""
