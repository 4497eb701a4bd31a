"""The Cloud API engine: client, transport profiles, errors, pacing, window, webhooks."""
