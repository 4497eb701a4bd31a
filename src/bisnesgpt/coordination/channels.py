"""Redis pub/sub channel names (the original coordinator's), the deployment namespace, and publish.

Pub/sub ignores Redis's logical databases: every deployment on one Redis server hears every
channel of every other. So each deployment publishes and subscribes under its own namespace,
``<namespace>:<channel>`` (``REDIS_NAMESPACE``; by default the PostgreSQL database's name and
the Redis database's number, ``bisnesgpt.1``), and every message carries the namespace and the
Redis db, which the one subscriber (``coordinator.py``) checks as well. An empty
``REDIS_NAMESPACE`` keeps the original channel names (to share channels with the Node server).
BullMQ's keys are not channels: they live in the logical database (``bull:<queue>:…``, as Node
BullMQ expects), which already keeps deployments apart.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PROCESS_STATUS = "process:status"
PROCESS_HEARTBEAT = "process:heartbeat"
BOT_EVENT = "bot:event"
PROCESS_MESSAGE = "process:message"
PROCESS_SHUTDOWN = "process:shutdown"
# Router cache invalidation: a phone's connection type changed.
PHONE_CONFIG_CHANGED = "phone:config"
# API key cache invalidation: a key was revoked (every process drops its cached keys).
API_KEYS_CHANGED = "api:keys"
# A failed authentication from an address: every api process re-checks that address's lock-out.
AUTH_FAILED = "api:auth-failed"
CHANNELS = (PROCESS_STATUS, PROCESS_HEARTBEAT, BOT_EVENT, PROCESS_MESSAGE, PROCESS_SHUTDOWN, PHONE_CONFIG_CHANGED,
            API_KEYS_CHANGED, AUTH_FAILED)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def deployment_namespace(configured: str | None, database_url: str, redis_url: str) -> str:
    """``REDIS_NAMESPACE`` if set, else ``<PostgreSQL database name>.<Redis db number>``."""
    if configured is not None:
        return configured
    database = unquote(urlsplit(database_url).path.lstrip("/")) or "postgres"
    db_path = urlsplit(redis_url).path.lstrip("/")
    redis_db = int(db_path) if db_path.isdigit() else 0
    return f"{_UNSAFE.sub('_', database)}.{redis_db}"


def channel_name(namespace: str, channel: str) -> str:
    """The channel as this deployment publishes and subscribes it."""
    return f"{namespace}:{channel}" if namespace else channel


def redis_db_of(redis: aioredis.Redis) -> int:
    """The logical database a client uses (pub/sub channels span all of a server's dbs)."""
    return int(redis.connection_pool.connection_kwargs.get("db") or 0)


def stamped(redis: aioredis.Redis, payload: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``payload`` with ``namespace`` and ``redisDb``: listeners ignore another deployment's
    messages even where the channel names coincide (an empty namespace)."""
    return {**payload, "namespace": namespace, "redisDb": redis_db_of(redis)}


async def publish(redis: aioredis.Redis, channel: str, payload: dict[str, Any], *, namespace: str) -> bool:
    """Publish JSON on ``channel`` of ``namespace``; False (logged at debug) when Redis is unavailable
    — pub/sub is best effort."""
    try:
        await redis.publish(channel_name(namespace, channel), json.dumps(stamped(redis, payload, namespace),
                                                                         default=str))
        return True
    except (RedisError, OSError) as exc:
        log.debug("publish to %s failed: %s", channel, exc)
        return False
