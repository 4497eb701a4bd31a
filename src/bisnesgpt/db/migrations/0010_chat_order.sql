-- 0010_chat_order: messages to one chat leave in the order they were accepted.
--
-- Each ordered outbound message gets the next number of its chat (company, phone, chat) in
-- the transaction that accepts it: the chat's chat_sequences row is upserted and stays
-- locked until that transaction commits, so numbers follow commit order whichever API
-- instance accepts. A message may be claimed for sending only when no message of its chat
-- with a lower number is still unfinished (accepted, queued, sending); chat_seq NULL is a
-- message sent without order (`"ordered": false`, the phone's ordered_sends off, Node jobs).
CREATE TABLE chat_sequences (
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    phone_index  INTEGER NOT NULL,
    chat_id      TEXT NOT NULL,
    last_seq     BIGINT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, phone_index, chat_id)
);
ALTER TABLE messages ADD COLUMN chat_seq BIGINT;
-- A chat's unfinished ordered messages by number: its head, and what holds a message back.
CREATE INDEX idx_messages_chat_order ON messages(company_id, phone_index, chat_id, chat_seq)
    WHERE chat_seq IS NOT NULL AND direction = 'outbound' AND status IN ('accepted', 'queued', 'sending');
-- Whether a phone's messages keep per-chat order unless a message says otherwise.
ALTER TABLE phone_configs ADD COLUMN ordered_sends BOOLEAN NOT NULL DEFAULT true;
