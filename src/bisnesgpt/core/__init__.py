"""Shared core: errors, crypto, ids, logging, clocks — no I/O at import."""
