"""Test support: real servers (external or embedded), fresh databases, spawned processes."""
