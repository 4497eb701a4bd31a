-- ping --
-- The cheapest round trip: is the server there?
SELECT 1

-- lock_migrations --
-- Take the session-level advisory lock $1 that serialises migrators (waits for another).
SELECT pg_advisory_lock($1)

-- unlock_migrations --
-- Release the migrators' advisory lock $1.
SELECT pg_advisory_unlock($1)

-- migrations_table_exists --
-- Whether schema_migrations exists (a database no migrator has touched has none).
SELECT to_regclass('schema_migrations') IS NOT NULL

-- create_migrations_table --
-- The tracking table: one row per applied migration, with the checksum of its file.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- applied_migrations --
-- The migrations applied so far, in order.
SELECT version, name, checksum FROM schema_migrations ORDER BY version

-- record_migration --
-- Note a migration as applied (in the transaction that applied it).
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)
