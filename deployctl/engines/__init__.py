"""Serving engines: one module each (TGI first), turning a plan's numbers into a container."""
