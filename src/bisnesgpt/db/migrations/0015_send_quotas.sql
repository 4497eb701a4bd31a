-- 0015_send_quotas: how many messages a company may send, per minute and per day.
--
-- NULL is "no quota" (the default: quotas are opt-in, set per company with
-- `bisnesgpt companies quota`). The counting itself lives in Redis (shared by every api
-- instance); these columns only say what the limits are.
ALTER TABLE companies
    ADD COLUMN send_quota_per_minute INTEGER CHECK (send_quota_per_minute > 0),
    ADD COLUMN send_quota_per_day    INTEGER CHECK (send_quota_per_day > 0);
