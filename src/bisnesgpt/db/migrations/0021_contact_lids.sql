-- 0021_contact_lids: which phone number a WhatsApp LID stands for, and chat commands.
--
-- WhatsApp names more and more senders by a LID (``<digits>@lid``, a per-account privacy id)
-- instead of their number. Whenever the protocol reveals both for a contact (a LID sender
-- with the number as its alternative, a group participant with both), the pair is kept per
-- phone, so every later message and event from that LID can carry the number too, and a
-- number can be found from its LID. ``number`` stays NULL for a LID whose number was never
-- revealed; it is filled in (once) when it is. Chat operations a WhatsApp-Web session carries
-- out for the API (read receipts, presence, on-WhatsApp checks) are session commands of the
-- action ``chat``, like group operations.
CREATE TABLE contact_lids (
    company_id   TEXT NOT NULL,
    phone_index  INTEGER NOT NULL,
    lid          TEXT NOT NULL CHECK (lid LIKE '%@lid'),
    number       TEXT CHECK (number ~ '^[0-9]{5,20}$'),
    first_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    learned_at   TIMESTAMPTZ,
    PRIMARY KEY (company_id, phone_index, lid),
    FOREIGN KEY (company_id, phone_index) REFERENCES phone_configs(company_id, phone_index) ON DELETE CASCADE
);
CREATE INDEX idx_contact_lids_number ON contact_lids(company_id, phone_index, number) WHERE number IS NOT NULL;

ALTER TABLE wwebjs_session_commands DROP CONSTRAINT wwebjs_session_commands_action_check;
ALTER TABLE wwebjs_session_commands ADD CONSTRAINT wwebjs_session_commands_action_check
    CHECK (action IN ('start', 'stop', 'restart', 'logout', 'pairing_code', 'group', 'chat'));
