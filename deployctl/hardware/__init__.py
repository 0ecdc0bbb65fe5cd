"""GPUs: what they are (NVML or a named profile) and their power limits."""
