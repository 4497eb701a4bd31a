-- database_exists --
-- A psql script (run with -v dbname=NAME): 1 when the database exists. psql quotes the
-- name as a literal.
SELECT 1 FROM pg_database WHERE datname = :'dbname'

-- create_database --
-- A psql script (run with -v dbname=NAME): create the database, psql quoting the name as
-- an identifier.
CREATE DATABASE :"dbname"
