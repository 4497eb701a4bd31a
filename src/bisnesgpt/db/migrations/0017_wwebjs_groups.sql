-- 0017_wwebjs_groups: group operations as session commands, group notifications and poll votes once.
--
-- A group operation (list, create, add participants, ...) is a session command like start or
-- logout: the API queues it, the process that drives the session carries it out on the
-- driver and writes the answer. WhatsApp redelivers a notification (someone joined a group,
-- its subject changed, a poll vote) until it is confirmed; each becomes one tenant event, so
-- the ids of those already turned into events are kept per phone. A poll vote replaces the
-- voter's earlier choice; the current choices give a poll's tallies. When a number was paired
-- starts its warm-up (low daily caps that grow day by day); numbers paired before are past it.
ALTER TABLE wwebjs_session_commands DROP CONSTRAINT wwebjs_session_commands_action_check;
ALTER TABLE wwebjs_session_commands ADD CONSTRAINT wwebjs_session_commands_action_check
    CHECK (action IN ('start', 'stop', 'restart', 'logout', 'pairing_code', 'group'));

CREATE TABLE wwebjs_notifications (
    company_id       TEXT NOT NULL,
    phone_index      INTEGER NOT NULL,
    notification_id  TEXT NOT NULL,
    chat_id          TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, notification_id),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);

CREATE TABLE wwebjs_poll_votes (
    company_id   TEXT NOT NULL,
    phone_index  INTEGER NOT NULL,
    poll_id      TEXT NOT NULL,
    voter        TEXT NOT NULL,
    selected     JSONB NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, poll_id, voter),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);

ALTER TABLE wwebjs_sessions ADD COLUMN paired_at TIMESTAMPTZ;
UPDATE wwebjs_sessions SET paired_at = created_at - interval '365 days' WHERE auth_state IS NOT NULL;
