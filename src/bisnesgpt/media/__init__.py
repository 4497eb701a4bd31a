"""Media: the store of media bytes (filesystem or S3), media objects, signed URLs, retention."""
