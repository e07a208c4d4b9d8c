"""Developer tools that do not ship in the wheel (soak test, key-latency probe)."""
