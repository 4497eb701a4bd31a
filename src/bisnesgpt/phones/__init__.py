"""Phone configurations (connection type, credentials) and their live status."""
