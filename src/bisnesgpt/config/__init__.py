"""Settings: one typed object, built once in each process entry point and passed down.

Environment names are the ones operators already use (ARCHITECTURE §2). A ``.env`` file in
the working directory is read if present; real environment variables win over it. Nothing
below this package reads ``os.environ``. The fields are grouped by topic (``processes``,
``engines``, ``edge``); ``Settings`` joins the groups.
"""

from bisnesgpt.config.settings import Settings, load_settings, mask_url
from bisnesgpt.config.types import ENGINE_ROLES, ROLES, Role, parse_memory_size

__all__ = ["ENGINE_ROLES", "ROLES", "Role", "Settings", "load_settings", "mask_url", "parse_memory_size"]
