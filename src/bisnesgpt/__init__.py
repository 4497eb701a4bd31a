"""bisnesgpt: a self-hosted, multi-tenant WhatsApp messaging gateway."""

__version__ = "0.1.0"
