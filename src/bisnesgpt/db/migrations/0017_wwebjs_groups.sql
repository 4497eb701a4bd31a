-- 0017_wwebjs_groups: group operations as session commands, and group notifications once.
--
-- A group operation (list, create, add participants, ...) is a session command like start or
-- logout: the API queues it, the process that drives the session carries it out on the
-- driver and writes the answer. WhatsApp redelivers a group notification (someone joined,
-- the subject changed) until it is confirmed; each becomes one tenant event, so the ids
-- of those already turned into events are kept per phone.
ALTER TABLE wwebjs_session_commands DROP CONSTRAINT wwebjs_session_commands_action_check;
ALTER TABLE wwebjs_session_commands ADD CONSTRAINT wwebjs_session_commands_action_check
    CHECK (action IN ('start', 'stop', 'restart', 'logout', 'pairing_code', 'group'));

CREATE TABLE wwebjs_group_notifications (
    company_id       TEXT NOT NULL,
    phone_index      INTEGER NOT NULL,
    notification_id  TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, notification_id),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
