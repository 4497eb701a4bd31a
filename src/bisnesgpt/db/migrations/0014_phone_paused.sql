-- 0014_phone_paused: a Cloud API phone's sending can be paused.
--
-- After Meta answers 368 / 131031 (the account is restricted) the meta engine holds every
-- message of the phone for META_PHONE_PAUSE_SECONDS; the phone's live status says so
-- (``paused``, with ``metadata.pausedUntil``) instead of a generic ``error``, so that the
-- console can show "paused until HH:MM" and offer to resume it.
ALTER TABLE phone_status DROP CONSTRAINT phone_status_status_check;
ALTER TABLE phone_status ADD CONSTRAINT phone_status_status_check CHECK (status IN (
    'initializing', 'qr', 'pairing_code', 'authenticated', 'ready',
    'error', 'disconnected', 'pending', 'paused'));
