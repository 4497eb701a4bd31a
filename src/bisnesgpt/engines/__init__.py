"""Engines: one subpackage per way of reaching WhatsApp (``wwebjs``, ``meta``)."""
