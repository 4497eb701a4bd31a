-- 0011_message_provenance: where a message came from and what the provider said about it.
--
-- external_ref is the id a message has in the system that handed it to us: the BullMQ job
-- id of a job in the original Node server's format. Such ids are unique only within their
-- queue (Node BullMQ counts 1, 2, 3 … per queue), so the message gets an id of its own and
-- the job id is kept here, unique per queue: a job run twice finds its own message, and a
-- job id reused for other content is a visible error rather than a silent duplicate.
ALTER TABLE messages ADD COLUMN external_ref TEXT;
CREATE UNIQUE INDEX idx_messages_external_ref ON messages(queue_name, external_ref)
    WHERE external_ref IS NOT NULL;

-- What the provider says about a message is kept whole. Every status it sends is a history
-- row, also one that does not move the message forward (Meta's `sent` webhook after the send
-- call returned, a `delivered` after `read`): applied says whether it moved the state, and
-- provider_at is the provider's own time for it. Meta's billing data (the `pricing` and
-- `conversation` blocks of its status webhooks) is kept on the message, the latest of each.
-- provider_timestamp is the provider's time of an inbound message (when the contact sent it),
-- which until now was written into delivered_at.
ALTER TABLE messages
    ADD COLUMN pricing JSONB,
    ADD COLUMN conversation JSONB,
    ADD COLUMN provider_timestamp TIMESTAMPTZ;
UPDATE messages SET provider_timestamp = delivered_at WHERE direction = 'inbound';
ALTER TABLE message_status_history
    ADD COLUMN applied BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN provider_at TIMESTAMPTZ;
-- Usage reports count billable messages and conversations by when they were sent.
CREATE INDEX idx_messages_company_sent ON messages(company_id, sent_at) WHERE sent_at IS NOT NULL;
