"""The orchestrator (``bisnesgpt start``): supervises the role processes."""
