"""The WhatsApp-Web engine: paired multi-device sessions, their lifecycle, send and receive.

``driver`` is the small interface a WhatsApp Web implementation offers (``drivers/neonize``
for the real network, ``drivers/sandbox`` for the sandbox network server); ``manager`` and
``session`` keep each phone's session alive and write every state change to ``phone_status``;
``engine`` is what the shared send worker calls; ``components`` assembles the ``wwebjs`` role.
"""
