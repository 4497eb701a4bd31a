"""Shipped stand-ins for WhatsApp's servers, for local development and the tests."""
