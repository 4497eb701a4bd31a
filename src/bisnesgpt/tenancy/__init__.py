"""Companies (tenants) and their API keys."""
