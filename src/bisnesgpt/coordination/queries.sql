-- acquire_leases --
-- Take or renew the named leases for one holder; answers the names now held by it, with the
-- epoch of this tenure. A lease is free when it does not exist or has expired; renewing keeps
-- acquired_at and the epoch, a takeover draws a new epoch.
INSERT INTO process_leases (name, holder, acquired_at, expires_at)
SELECT name, $2, now(), now() + make_interval(secs => $3) FROM unnest($1::text[]) AS t(name)
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    acquired_at = CASE WHEN process_leases.holder = EXCLUDED.holder
                       THEN process_leases.acquired_at ELSE now() END,
    epoch = CASE WHEN process_leases.holder = EXCLUDED.holder
                 THEN process_leases.epoch ELSE nextval('process_lease_epochs') END,
    expires_at = EXCLUDED.expires_at
WHERE process_leases.holder = EXCLUDED.holder OR process_leases.expires_at < now()
RETURNING name, epoch

-- lease_is_current --
-- The fence of a write: this holder's tenure (epoch) of the lease is still the live one. The
-- row stays locked until the writing transaction ends, so no takeover can slip in between.
SELECT 1 FROM process_leases WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now() FOR SHARE

-- current_holders --
-- Who holds each of these leases now (expired ones are nobody's).
SELECT name, holder, expires_at FROM process_leases WHERE name = ANY($1::text[]) AND expires_at > now()

-- release_leases --
-- Give up leases, only those this holder has.
DELETE FROM process_leases WHERE name = ANY($1::text[]) AND holder = $2
