"""Fixed-window counters for the abuse limits (a window opens with its first hit), shared by every worker process.

`memory://` (the default) keeps them in the service's own database: every worker of an instance shares
them, and so do instances that share the database; they need no other component and survive restarts.
`redis://…` keeps them in Redis; while Redis is unreachable they fall back to the database, so the
limits keep holding.
"""
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.engine import Connection, Engine

from app.db.models import RateCounter

log = logging.getLogger("app.ratelimit.counters")

PURGE_EVERY = 60.0  # seconds between deletions of expired counters, per process
REDIS_RETRY = 5.0  # seconds before Redis is tried again after it failed


@dataclass(frozen=True)
class Count:
    hits: int
    reset_at: float  # epoch seconds when the window ends (it opened with its first hit)


class Counters(Protocol):
    def hit(self, key: str, seconds: int) -> Count:
        """Add one to `key` in its current window of `seconds`; the count after it."""
        ...

    def peek(self, key: str, seconds: int) -> Count:
        """The count of `key` in its current window, unchanged."""
        ...

    def give_back(self, key: str) -> None:
        """Take back one hit of `key` in its current window (an attempt that turned out to be no failure)."""
        ...


UPSERT = {
    # A window opens with the first hit and lasts `seconds`; a hit after it ends opens the next one.
    # MySQL and MariaDB assign left to right: `expires_at` is set last, so the tests before it see the old one.
    # Each hit reads back its own count, not one a parallel hit raised meanwhile (which would refuse a hit
    # still within the limit): LAST_INSERT_ID(expr) keeps the value for this connection alone, and
    # SQLite's RETURNING answers from the same statement.
    "mysql": text(
        "INSERT INTO rate_counters (`key`, window_start, expires_at, hits) VALUES (:key, :now, :end, LAST_INSERT_ID(1)) "
        "ON DUPLICATE KEY UPDATE hits = LAST_INSERT_ID(IF(expires_at <= :now, 1, hits + 1)), "
        "window_start = IF(expires_at <= :now, :now, window_start), "
        "expires_at = IF(expires_at <= :now, :end, expires_at)"
    ),
    "sqlite": text(
        "INSERT INTO rate_counters (key, window_start, expires_at, hits) VALUES (:key, :now, :end, 1) "
        "ON CONFLICT (key) DO UPDATE SET hits = CASE WHEN expires_at <= :now THEN 1 ELSE hits + 1 END, "
        "window_start = CASE WHEN expires_at <= :now THEN :now ELSE window_start END, "
        "expires_at = CASE WHEN expires_at <= :now THEN :end ELSE expires_at END "
        "RETURNING hits, expires_at"
    ),
}
OWN_COUNT = text("SELECT LAST_INSERT_ID() AS hits, expires_at FROM rate_counters WHERE `key` = :key")
READ = select(RateCounter.hits, RateCounter.expires_at).where(RateCounter.key == bindparam("key"))
GIVE_BACK = (
    update(RateCounter)
    .where(RateCounter.key == bindparam("counter"), RateCounter.hits > 0, RateCounter.expires_at > bindparam("now"))
    .values(hits=RateCounter.hits - 1)
)


class DatabaseCounters:
    """One upsert per hit (and on MySQL a read of what it counted): atomic across processes and instances."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.upsert = UPSERT["sqlite" if self.sqlite else "mysql"]
        self.purged_at = 0.0

    def hit(self, key: str, seconds: int, connection: Connection | None = None) -> Count:
        """On `connection` the hit joins that transaction (it counts when that commits); else it is its own."""
        if connection is None:
            with self.engine.connect() as own:
                return self.hit(key, seconds, own)
        now = int(time.time())
        counted = connection.execute(self.upsert, {"key": key, "now": now, "end": now + seconds})
        row = counted.one() if self.sqlite else connection.execute(OWN_COUNT, {"key": key}).one()
        if now - self.purged_at > PURGE_EVERY:
            self.purged_at = now
            connection.execute(delete(RateCounter).where(RateCounter.expires_at < now))
        return Count(row.hits, row.expires_at)

    def give_back(self, key: str) -> None:
        with self.engine.connect() as connection:
            connection.execute(GIVE_BACK, {"counter": key, "now": int(time.time())})

    def peek(self, key: str, seconds: int) -> Count:
        now = int(time.time())
        with self.engine.connect() as connection:
            row = connection.execute(READ, {"key": key}).first()
        if row is None or row.expires_at <= now:
            return Count(0, now + seconds)
        return Count(row.hits, row.expires_at)


class RedisCounters:
    """Counters in Redis (through the limits library's storage, whose window opens with the first hit),
    falling back to `fallback` while Redis is down."""

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
        hits = self.storage.incr(key, seconds)
        return Count(hits, self.storage.get_expiry(key))

    def _peek(self, key: str, seconds: int) -> Count:
        hits = self.storage.get(key)
        return Count(hits, self.storage.get_expiry(key) if hits else time.time() + seconds)

    def hit(self, key: str, seconds: int) -> Count:
        return self._redis(self._hit, key, seconds) or self.fallback.hit(key, seconds)

    def give_back(self, key: str) -> None:
        if self._redis(self._give_back, key, 0) is None:
            self.fallback.give_back(key)

    def _give_back(self, key: str, _seconds: int) -> Count:
        if self.storage.get(key) > 0:  # a window that ended meanwhile is not reopened below zero
            self.storage.incr(key, 1, amount=-1)
        return Count(0, 0)

    def peek(self, key: str, seconds: int) -> Count:
        return self._redis(self._peek, key, seconds) or self.fallback.peek(key, seconds)

    def check(self) -> None:
        """Raise unless Redis answers now (readiness: the limits work, but from the database meanwhile)."""
        if not self.storage.check():
            raise ConnectionError("Redis does not answer")


def from_config(config, database: DatabaseCounters) -> Counters:
    uri = config["RATELIMIT_STORAGE_URI"] or "memory://"
    if uri.startswith(("redis://", "rediss://", "redis+sentinel://", "redis+cluster://", "redis+unix://")):
        timeout = config["RATELIMIT_STORAGE_TIMEOUT"]
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
        return RedisCounters(uri, database, options)
    if uri != "memory://":
        raise RuntimeError(f"RATELIMIT_STORAGE_URI={uri!r} is not supported: use memory:// (the default) or redis://…")
    return database
