"""Infrastructure: embedded PostgreSQL/Valkey, service resolution, Redis clients."""
