"""The engines some tests need beyond SQLite: Redis (and PostgreSQL, from DATABASE_URL)."""

from __future__ import annotations

import os

import redis

# Database 9: the tests' own; their keys carry the run's REDIS_KEY_PREFIX besides.
REDIS_URL = os.environ.get("CHATSITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
