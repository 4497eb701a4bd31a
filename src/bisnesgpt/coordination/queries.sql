-- acquire_leases --
-- Take or renew the named leases for one holder; answers the names now held by it.
-- A lease is free when it does not exist or has expired; renewing keeps acquired_at.
INSERT INTO process_leases (name, holder, acquired_at, expires_at)
SELECT name, $2, now(), now() + make_interval(secs => $3) FROM unnest($1::text[]) AS t(name)
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    acquired_at = CASE WHEN process_leases.holder = EXCLUDED.holder
                       THEN process_leases.acquired_at ELSE now() END,
    expires_at = EXCLUDED.expires_at
WHERE process_leases.holder = EXCLUDED.holder OR process_leases.expires_at < now()
RETURNING name

-- current_holders --
-- Who holds each of these leases now (expired ones are nobody's).
SELECT name, holder, expires_at FROM process_leases WHERE name = ANY($1::text[]) AND expires_at > now()

-- release_leases --
-- Give up leases, only those this holder has.
DELETE FROM process_leases WHERE name = ANY($1::text[]) AND holder = $2
