"""PostgreSQL: the pool, the migration runner and the SQL the product runs."""
