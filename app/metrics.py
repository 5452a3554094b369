"""What GET /metrics reports (SPEC §12), in Prometheus' text format, for every worker process together.

Each worker writes its numbers to files of its own under PROMETHEUS_MULTIPROC_DIR, which the server makes
empty at start (app.server.multiprocess); the worker that answers a scrape adds them all up. Outside the
server (the Flask test client, `flask run`) the numbers are this process's.

Labels are route templates (`/file/download/{file_id}`, never the path with its id or a link's token),
methods, statuses and names of limits: none says who made a request. Nothing is counted unless metrics are
served (METRICS_TOKEN or METRICS_PORT), so a server without them pays nothing.
"""
import os
import re
import threading
import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from app import threads

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry(auto_describe=True)  # ours alone: no process or GC numbers of whichever worker answers
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # 404s and the like: a path no route has must not become a label of its own
# Requests whose bodies or answers are a file's bytes, by endpoint.
TRANSFERS = {
    "files.upload": "upload", "files.replace": "upload", "uploads.create": "upload", "uploads.patch": "upload",
    "files.download": "download", "links.fetch": "download", "account.export": "download",
}

REQUESTS = Counter("filesvc_http_requests", "Requests answered, by route template, method and status.",
                   ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("filesvc_http_request_duration_seconds",
                    "Time from a request's headers to its answer's headers (a download's bytes not included).",
                    ["route", "method"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
IN_FLIGHT = Gauge("filesvc_transfers_in_flight", "Uploads and downloads of files in progress.", ["direction"],
                  registry=REGISTRY, multiprocess_mode="livesum")
BYTES = Counter("filesvc_http_bytes", "Bytes received from and sent to clients, headers included.", ["direction"],
                registry=REGISTRY)
POOL_IN_USE = Gauge("filesvc_db_pool_in_use", "Database connections checked out of the pools.", ["pool"],
                    registry=REGISTRY, multiprocess_mode="livesum")
POOL_CAPACITY = Gauge("filesvc_db_pool_capacity", "Connections the pools may open at most (pool size + overflow).",
                      ["pool"], registry=REGISTRY, multiprocess_mode="livesum")
REFUSALS = Counter("filesvc_rate_limit_refusals", "429 answers, by the limit that refused.", ["limit"],
                   registry=REGISTRY)

FLUSH_SECONDS = 1.0  # how stale a worker's numbers may be in a scrape; the worker answering one is never stale


class _Pending:
    """What this process counted since its last flush. A write to the metrics files costs several µs (a lock,
    a pid check, a packed write to a mapped page), and a request makes about eight: so a request only adds
    to these dicts, and the sums are written once a second (about 1 µs a request instead of ~50)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], list] = {}  # [sum, count in bucket 0, count in bucket 1, …]
        self.bytes = {"in": 0, "out": 0}
        self.refusals: dict[str, int] = {}


_lock = threading.Lock()  # greenlets never wait on it (nothing inside yields); plain threads outside the server may
_pending = _Pending()
_levels: dict[tuple[Gauge, str], int] = {}  # gauges this process moves: its current value of each
_dirty: set[tuple[Gauge, str]] = set()
_flushing = False  # in this process; a forked child starts its own (os.register_at_fork below)
_routes: dict[str, str] = {}
BOUNDS = tuple(LATENCY._upper_bounds)  # the histogram's buckets, +Inf last


def route_label(rule: str | None) -> str:
    """`/file/download/<int(max=…):file_id>` → `/file/download/{file_id}`: the template, never the values."""
    if rule is None:
        return UNMATCHED
    label = _routes.get(rule)
    if label is None:
        label = _routes[rule] = re.sub(r"<(?:[^:<>]*:)?([^<>]+)>", r"{\1}", rule)
    return label


def request_done(rule: str | None, method: str, status: int, seconds: float) -> None:
    route, method = route_label(rule), method if method in METHODS else "OTHER"
    with _lock:
        key = (route, method, status)
        _pending.requests[key] = _pending.requests.get(key, 0) + 1
        histogram = _pending.latency.get(key[:2])
        if histogram is None:
            histogram = _pending.latency[key[:2]] = [0.0] + [0] * len(BOUNDS)
        histogram[0] += seconds
        histogram[1 + bisect_left(BOUNDS, seconds)] += 1  # the first bucket whose bound is >= seconds
    _keep_flushing()


def transfer_started(endpoint: str | None) -> str | None:
    direction = TRANSFERS.get(endpoint or "")
    if direction is not None:
        _move(IN_FLIGHT, direction, 1)
    return direction


def transfer_ended(direction: str) -> None:
    _move(IN_FLIGHT, direction, -1)


def transferred(received: int, sent: int) -> None:
    with _lock:
        _pending.bytes["in"] += received
        _pending.bytes["out"] += sent
    _keep_flushing()


def refused(limit: str) -> None:
    with _lock:
        _pending.refusals[limit] = _pending.refusals.get(limit, 0) + 1


def watch_pool(engine, name: str) -> None:
    """Count the engine's connections in use, as its pool hands them out and takes them back."""
    from sqlalchemy import event

    capacity, owner = POOL_CAPACITY.labels(name), [0]
    pool = engine.pool

    def checkout(*_) -> None:
        # The pool's size is reported by the process that uses the pool: a master that built the app before
        # forking (GUNICORN_PRELOAD) never does, and its numbers would stay beside the workers'.
        if owner[0] != os.getpid():
            owner[0] = os.getpid()
            if hasattr(pool, "size") and hasattr(pool, "_max_overflow"):
                capacity.set(pool.size() + max(pool._max_overflow, 0))
        _move(POOL_IN_USE, name, 1)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", lambda *_: _move(POOL_IN_USE, name, -1))


def _move(gauge: Gauge, label: str, by: int) -> None:
    key = (gauge, label)
    with _lock:
        _levels[key] = _levels.get(key, 0) + by
        _dirty.add(key)
    _keep_flushing()


def _keep_flushing() -> None:
    """Start this process's flushes on its first count (in a server worker: a greenlet of its loop)."""
    global _flushing
    if not _flushing:
        _flushing = True
        threads.detach(_flush_every, FLUSH_SECONDS)


def _forked() -> None:
    global _flushing, _pending
    _flushing, _pending = False, _Pending()  # the parent's counts are the parent's to write
    _levels.clear()
    _dirty.clear()


os.register_at_fork(after_in_child=_forked)


def _flush_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        flush()


def flush() -> None:
    """Write what this process counted to its metrics (its files, in the server)."""
    global _pending
    with _lock:
        pending, _pending = _pending, _Pending()
        levels = {key: _levels[key] for key in _dirty}
        _dirty.clear()
    for (route, method, status), count in pending.requests.items():
        REQUESTS.labels(route, method, str(status)).inc(count)
    for (route, method), histogram in pending.latency.items():
        child = LATENCY.labels(route, method)
        # Histogram.observe() takes one value at a time; these are the same two writes it makes, summed.
        child._sum.inc(histogram[0])
        for bucket, count in enumerate(histogram[1:]):
            if count:
                child._buckets[bucket].inc(count)
    for direction, count in pending.bytes.items():
        if count:
            BYTES.labels(direction).inc(count)
    for limit, count in pending.refusals.items():
        REFUSALS.labels(limit).inc(count)
    for (gauge, label), level in levels.items():
        gauge.labels(label).set(level)


def exposition(uploads_open: int) -> bytes:
    """Every worker's numbers, and the ones only the database knows (read for this scrape)."""
    flush()
    directory = os.environ.get(MULTIPROC_DIR)
    if directory:
        workers = CollectorRegistry()
        MultiProcessCollector(workers, directory)
        text = generate_latest(workers)
    else:
        text = generate_latest(REGISTRY)
    now = CollectorRegistry()
    now.register(_Snapshot(uploads_open))
    return text + generate_latest(now)


class _Snapshot:
    def __init__(self, uploads_open: int):
        self.uploads_open = uploads_open

    def collect(self):
        yield GaugeMetricFamily("filesvc_tus_uploads_open",
                                "Resumable uploads begun and neither finished nor expired (the whole database).",
                                value=self.uploads_open)
