"""Redis pub/sub channel names (the original coordinator's) and a publish helper."""

from __future__ import annotations

import json
import logging
from typing import Any

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
CHANNELS = (PROCESS_STATUS, PROCESS_HEARTBEAT, BOT_EVENT, PROCESS_MESSAGE, PROCESS_SHUTDOWN, PHONE_CONFIG_CHANGED)


def redis_db_of(redis: aioredis.Redis) -> int:
    """The logical database a client uses (pub/sub channels span all of a server's dbs)."""
    return int(redis.connection_pool.connection_kwargs.get("db") or 0)


def stamped(redis: aioredis.Redis, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with ``redisDb``: deployments sharing a Redis server on different logical
    databases see each other's channels, and listeners use this to ignore the others."""
    return {**payload, "redisDb": redis_db_of(redis)}


async def publish(redis: aioredis.Redis, channel: str, payload: dict[str, Any]) -> bool:
    """Publish JSON; False (logged at debug) when Redis is unavailable — pub/sub is best effort."""
    try:
        await redis.publish(channel, json.dumps(stamped(redis, payload), default=str))
        return True
    except (RedisError, OSError) as exc:
        log.debug("publish to %s failed: %s", channel, exc)
        return False
