"""The server's own housekeeping (SPEC §12): each worker checks now and then whether a run is due; the
database decides which one runs (app.services.housekeeping). `flask housekeeping` runs it on demand."""
import logging
import random
import time
from dataclasses import asdict
from datetime import timedelta

from flask import Flask

from app import threads
from app.db import utcnow
from app.http.context import get_db, storage
from app.ratelimit.counters import DatabaseCounters
from app.services.housekeeping import Swept, claim, is_due, release, sweep

log = logging.getLogger("app.housekeeping")
CHECK_EVERY = 60.0  # seconds between a worker's looks at whether a run is due (at most; less for short intervals)


def schedule(app: Flask) -> None:
    """Start this process's checks (a greenlet in a server worker); HOUSEKEEPING_INTERVAL=0 starts none."""
    if app.config["HOUSEKEEPING_INTERVAL"] > 0:
        threads.detach(_checks, app)


def _checks(app: Flask) -> None:
    every = min(CHECK_EVERY, float(app.config["HOUSEKEEPING_INTERVAL"]))
    while True:
        # Spread over the period, so the workers of several instances do not all ask at the same instant.
        time.sleep(every * random.uniform(0.5, 1.0))
        try:
            run_if_due(app)
        except Exception:  # the database is away, say: the next check tries again
            log.exception("housekeeping failed")


def run_if_due(app: Flask) -> Swept | None:
    """Run if no instance has in this HOUSEKEEPING_INTERVAL and none is running; what it removed, or None."""
    with app.app_context():
        if not is_due(_counters(app), interval=app.config["HOUSEKEEPING_INTERVAL"]):
            return None
        return run(app)


def run(app: Flask, min_age: float | None = None) -> Swept | None:
    """One run, unless another holds the lease (None)."""
    with app.app_context():
        counters = _counters(app)
        if not claim(counters):
            log.info("housekeeping skipped: another run holds the lease")
            return None
        started = time.monotonic()
        try:
            swept = sweep(get_db(), storage(), now=utcnow(),
                          keep=timedelta(days=app.config["SESSION_RETENTION_DAYS"]),
                          min_age=app.config["HOUSEKEEPING_MIN_AGE"] if min_age is None else min_age)
        finally:
            release(counters)
        log.info("housekeeping removed %s in %.2fs",
                 ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in asdict(swept).items()),
                 time.monotonic() - started)
        return swept


def _counters(app: Flask) -> DatabaseCounters:
    return DatabaseCounters(app.extensions["autocommit_engine"])
