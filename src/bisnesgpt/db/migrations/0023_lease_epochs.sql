-- 0023_lease_epochs: every tenure of a lease gets its own number (a fencing token).
--
-- A lease's epoch is drawn from one sequence whenever a holder takes the lease (a new row, or
-- a takeover of an expired one) and kept while the same holder renews it; a release and a
-- new take draw a new one. A holder writes what the lease protects (a wwebjs session's status
-- and credentials) only in a transaction that first finds its own holder and epoch still on
-- the row (and keeps the row locked until commit), so an owner that was frozen or cut off past
-- its lease cannot write over its successor's work, even with a stale view of its own lease.
CREATE SEQUENCE process_lease_epochs;
ALTER TABLE process_leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT nextval('process_lease_epochs');
