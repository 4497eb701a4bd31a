"""Cross-process coordination: Redis pub/sub channels and named leases."""
