"""Heartbeats, process events, metrics and the /health and /metrics endpoints."""
