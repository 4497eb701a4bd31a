-- name_store_schema --
-- Name the schema of whatsmeow's session store for create_store_schema, in this transaction only.
SELECT set_config('bisnesgpt.store_schema', $1, true)

-- create_store_schema --
-- Create the schema named by name_store_schema if it does not exist (whatsmeow creates its tables in it).
DO $$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', current_setting('bisnesgpt.store_schema'));
END
$$

-- terminate_attempt_connections --
-- Close the PostgreSQL connections one finished connect attempt of neonize left open ($1: their
-- application_name); neonize opens a database handle per connect and never closes it.
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()
