"""The public HTTP API (the ``api`` role): routes, auth, problem responses."""
