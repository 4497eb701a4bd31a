"""Tenant webhooks: endpoints, signed durable delivery, retries, dead letters and replay.

Flow: ``record_tenant_event`` (messaging/events.py) writes the event and one
``webhook_deliveries`` row per matching endpoint in the caller's transaction; the delivery
worker (``worker.py``, run by every ``api`` process and by ``legacy``) is woken by
LISTEN/NOTIFY (polling as a fallback), claims due rows with row locks (any number of
workers, per-endpoint concurrency bound), checks the destination (``urls.py``), posts the
signed JSON (``signing.py``, ``delivery.py``), and records the outcome: delivered, retry
later with backoff (``backoff.py``) or dead after the retry horizon.
"""
