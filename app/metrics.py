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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

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

_lock = threading.Lock()
_routes: dict[str, str] = {}
_children: dict[tuple[str, str, int], tuple] = {}


def route_label(rule: str | None) -> str:
    """`/file/download/<int(max=…):file_id>` → `/file/download/{file_id}`: the template, never the values."""
    if rule is None:
        return UNMATCHED
    label = _routes.get(rule)
    if label is None:
        label = _routes[rule] = re.sub(r"<(?:[^:<>]*:)?([^<>]+)>", r"{\1}", rule)
    return label


def request_done(rule: str | None, method: str, status: int, seconds: float) -> None:
    key = (route_label(rule), method if method in METHODS else "OTHER", status)
    children = _children.get(key)
    if children is None:  # labels() takes a lock and builds a tuple: once per combination, not per request
        with _lock:
            children = _children[key] = (REQUESTS.labels(key[0], key[1], str(status)),
                                         LATENCY.labels(key[0], key[1]))
    children[0].inc()
    children[1].observe(seconds)


def transfer_started(endpoint: str | None) -> str | None:
    direction = TRANSFERS.get(endpoint or "")
    if direction is not None:
        IN_FLIGHT.labels(direction).inc()
    return direction


def transfer_ended(direction: str) -> None:
    IN_FLIGHT.labels(direction).dec()


def transferred(received: int, sent: int) -> None:
    if received:
        BYTES.labels("in").inc(received)
    if sent:
        BYTES.labels("out").inc(sent)


def refused(limit: str) -> None:
    REFUSALS.labels(limit).inc()


def watch_pool(engine, name: str) -> None:
    """Count the engine's connections in use, as its pool hands them out and takes them back."""
    from sqlalchemy import event

    in_use, capacity, owner = POOL_IN_USE.labels(name), POOL_CAPACITY.labels(name), [0]
    pool = engine.pool

    def checkout(*_) -> None:
        # The pool's size is reported by the process that uses the pool: a master that built the app before
        # forking (GUNICORN_PRELOAD) never does, and its numbers would stay beside the workers'.
        if owner[0] != os.getpid():
            owner[0] = os.getpid()
            if hasattr(pool, "size") and hasattr(pool, "_max_overflow"):
                capacity.set(pool.size() + max(pool._max_overflow, 0))
        in_use.inc()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", lambda *_: in_use.dec())


def exposition(uploads_open: int) -> bytes:
    """Every worker's numbers, and the ones only the database knows (read for this scrape)."""
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
