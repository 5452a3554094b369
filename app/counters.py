"""Fixed-window counters for the abuse limits, shared by every worker process.

`memory://` (the default) keeps them in the service's own database: every worker of an instance shares
them, and so do instances that share the database; they need no other component and survive restarts.
`redis://…` keeps them in Redis; while Redis is unreachable they fall back to the database, so the
limits keep holding.
"""
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.engine import Connection, Engine

from app.models import RateCounter

log = logging.getLogger("app.counters")

PURGE_EVERY = 60.0  # seconds between deletions of expired counters, per process
REDIS_RETRY = 5.0  # seconds before Redis is tried again after it failed


@dataclass(frozen=True)
class Count:
    hits: int
    reset_at: float  # epoch seconds when the window ends


class Counters(Protocol):
    def hit(self, key: str, seconds: int) -> Count:
        """Add one to `key` in its current window of `seconds`; the count after it."""
        ...

    def peek(self, key: str, seconds: int) -> Count:
        """The count of `key` in its current window, unchanged."""
        ...


def window(seconds: int, now: float) -> tuple[int, int]:
    start = int(now // seconds * seconds)
    return start, start + seconds


UPSERT = {
    # MySQL and MariaDB assign left to right: `hits` still sees the old window_start.
    "mysql": text(
        "INSERT INTO rate_counters (`key`, window_start, expires_at, hits) VALUES (:key, :start, :end, 1) "
        "ON DUPLICATE KEY UPDATE hits = IF(window_start = VALUES(window_start), hits + 1, 1), "
        "window_start = VALUES(window_start), expires_at = VALUES(expires_at)"
    ),
    "sqlite": text(
        "INSERT INTO rate_counters (key, window_start, expires_at, hits) VALUES (:key, :start, :end, 1) "
        "ON CONFLICT (key) DO UPDATE SET hits = CASE WHEN window_start = excluded.window_start "
        "THEN hits + 1 ELSE 1 END, window_start = excluded.window_start, expires_at = excluded.expires_at"
    ),
}
READ = select(RateCounter.hits, RateCounter.window_start).where(RateCounter.key == bindparam("key"))


class DatabaseCounters:
    """One upsert and one read per hit, on an autocommit connection: atomic across processes and instances."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.upsert = UPSERT["sqlite" if engine.dialect.name == "sqlite" else "mysql"]
        self.purged_at = 0.0

    def hit(self, key: str, seconds: int, connection: Connection | None = None) -> Count:
        """On `connection` the hit joins that transaction (it counts when that commits); else it is its own."""
        if connection is None:
            with self.engine.connect() as own:
                return self.hit(key, seconds, own)
        now = time.time()
        start, end = window(seconds, now)
        connection.execute(self.upsert, {"key": key, "start": start, "end": end})
        hits = connection.execute(READ, {"key": key}).scalar_one()
        if now - self.purged_at > PURGE_EVERY:
            self.purged_at = now
            connection.execute(delete(RateCounter).where(RateCounter.expires_at < int(now)))
        return Count(hits, end)

    def peek(self, key: str, seconds: int) -> Count:
        start, end = window(seconds, time.time())
        with self.engine.connect() as connection:
            row = connection.execute(READ, {"key": key}).first()
        return Count(row.hits if row is not None and row.window_start == start else 0, end)


class RedisCounters:
    """Counters in Redis (through the limits library's storage), falling back to `fallback` while it is down."""

    def __init__(self, uri: str, fallback: Counters, options: dict | None = None):
        from limits.storage import storage_from_string  # redis is imported only when configured

        self.storage = storage_from_string(uri, **(options or {}))
        self.fallback = fallback
        self.down_until = 0.0

    def _redis(self, action, key: str, seconds: int) -> Count | None:
        if time.time() < self.down_until:
            return None
        try:
            return action(key, seconds)
        except Exception as e:  # any failure to reach Redis: count in the database meanwhile
            log.warning("rate-limit store unreachable (%s); counting in the database for %ss", e, REDIS_RETRY)
            self.down_until = time.time() + REDIS_RETRY
            return None

    def _hit(self, key: str, seconds: int) -> Count:
        start, end = window(seconds, time.time())
        hits = self.storage.incr(f"{key}:{start}", seconds)
        return Count(hits, end)

    def _peek(self, key: str, seconds: int) -> Count:
        start, end = window(seconds, time.time())
        return Count(self.storage.get(f"{key}:{start}"), end)

    def hit(self, key: str, seconds: int) -> Count:
        return self._redis(self._hit, key, seconds) or self.fallback.hit(key, seconds)

    def peek(self, key: str, seconds: int) -> Count:
        return self._redis(self._peek, key, seconds) or self.fallback.peek(key, seconds)


def from_config(config, database: DatabaseCounters) -> Counters:
    uri = config["RATELIMIT_STORAGE_URI"] or "memory://"
    if uri.startswith(("redis://", "rediss://", "redis+sentinel://", "redis+cluster://", "redis+unix://")):
        timeout = config["RATELIMIT_STORAGE_TIMEOUT"]
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        return RedisCounters(uri, database, options)
    if uri != "memory://":
        raise RuntimeError(f"RATELIMIT_STORAGE_URI={uri!r} is not supported: use memory:// (the default) or redis://…")
    return database
