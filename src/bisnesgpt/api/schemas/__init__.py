"""Request and response models of the public API (pydantic; they are the OpenAPI document)."""
