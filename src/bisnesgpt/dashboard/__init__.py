"""The operator dashboard, served by the ``api`` role at ``/dashboard``.

Four pages — processes, queues, phones and sessions, messages — rendered in the browser
from the JSON routes under ``/dashboard/api/`` and kept current by one Server-Sent Events
stream fed from the Redis coordinator channels (``process:heartbeat``, ``process:status``,
``bot:event``) plus a periodic re-read of process health and queue counts.

Sign-in exchanges an API key (operator: ``ADMIN_API_KEY`` or an admin key; or a company
key) for a signed, expiring session cookie (``auth.py``); every state-changing request
carries a CSRF token. A company user sees and acts on its own company's phones and
messages only; processes and queues are for operators.

No front-end build: the HTML, CSS, JavaScript and the vendored libraries (uPlot for the
charts, Swagger UI for ``/docs``, each with its licence) ship inside this package.
"""
