-- 0018_wwebjs_members: the wwebjs processes that share the sessions, and what each can take.
--
-- Every wwebjs process keeps its row alive on each reconcile tick (expires_at, like a lease)
-- with its capacity (WWEBJS_MAX_SESSIONS, NULL for no limit) and how many sessions it drives;
-- a draining process (SIGTERM, rolling restart) says so and takes no new ones. From the live
-- rows every process computes the same fair share per process, so a new or unowned session
-- goes to a process below its share and a process above it hands sessions over a few at a time.
CREATE TABLE wwebjs_members (
    holder        TEXT PRIMARY KEY,
    process_name  TEXT NOT NULL,
    host          TEXT NOT NULL,
    capacity      INTEGER CHECK (capacity IS NULL OR capacity >= 0),
    sessions      INTEGER NOT NULL DEFAULT 0,
    draining      BOOLEAN NOT NULL DEFAULT false,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);
