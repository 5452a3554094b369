"""gunicorn settings for every environment; override with the environment variables named here.

They are read after `.env` (see config.py), so `PORT=3901` there is honoured; the real environment wins."""
import errno
import gc
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from app.server import listeners, logformat, multiprocess  # noqa: E402
from config import INSTANCE_DIR, load_env_file  # noqa: E402

load_env_file()

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3000')}"
# GET /metrics without a token, on loopback only, beside the service's own address (the app answers nothing
# else there: app.http.middleware).
METRICS_PORT = int(os.environ.get("METRICS_PORT") or 0)
if METRICS_PORT:
    if str(METRICS_PORT) == os.environ.get("PORT", "3000"):
        raise SystemExit("METRICS_PORT must differ from PORT: the metrics port answers without a token")
    bind = [bind, f"127.0.0.1:{METRICS_PORT}"]
# The workers' metrics directory, made empty once per server: this file is read again on a reload (HUP),
# and the running workers' numbers must survive that. It has to exist before anything imports
# prometheus-client (the worker class, a preloaded app), which is why it is made here and not in a hook.
if os.environ.get("FILESVC_METRICS_MASTER") != str(os.getpid()):
    os.environ["FILESVC_METRICS_MASTER"] = str(os.getpid())
    multiprocess.prepare(os.environ.get("INSTANCE_DIR") or str(INSTANCE_DIR), bind if isinstance(bind, str) else bind[0])
# One event loop per process (gevent): a connection costs a greenlet, not a thread, so slow clients hold only
# their own transfers (SPEC §13). The subclass adds the contract's timeouts and JSON refusals.
worker_class = "app.server.worker.JsonErrorWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Connections one worker holds at once; each is a file descriptor (the worker raises its own limit to fit).
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "10000"))
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = int(float(os.environ.get("KEEPALIVE_TIMEOUT", "5")))  # also read by the worker, per connection
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
if logformat.check(os.environ.get("LOG_FORMAT", "text").strip().lower()) == "json":
    logger_class = logformat.GunicornJsonLogger
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# GUNICORN_PRELOAD=true: the master builds the app once and the workers fork from it, sharing its pages;
# gc.freeze() before each fork keeps those objects out of the workers' collections, which would otherwise
# write to (and so copy) every page of them. Off by default: the app's modules are then imported before gevent
# patches `threading` in the worker, so a lock they make at import is a thread lock that no greenlet may wait
# on; without it, the master still imports the modules (when_ready) and the workers share those pages.
# bench/README.md ("Memory") has the figures of both.
preload_app = os.environ.get("GUNICORN_PRELOAD", "false").strip().lower() in ("1", "true", "yes", "on")
# No runtime control socket: several instances on one host would fight over its default path.
control_socket_disable = True
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new connections across
# them evenly. On one shared socket, a burst of connections (a client's or a proxy's pool opening at once)
# could be accepted mostly by one worker, which then served them all on one core (bench/README.md). The port
# check below keeps a second server from silently sharing the port. The master makes these sockets, one per
# worker slot, and keeps them: a worker that stops (a reload, a restart) hands its slot's socket, with the
# connections queued on it, to the worker replacing it; a socket closed with connections queued resets them.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").strip().lower() in ("1", "true", "yes", "on")
def on_starting(server):
    """With reuse_port nothing would stop a second server from binding the same port and taking half of its
    connections: refuse to start when something already listens there, as a plain bind would."""
    if not server.cfg.reuse_port:
        return
    for address in server.cfg.address:
        if not isinstance(address, tuple):  # a unix socket: its path is checked by the bind itself
            continue
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
            try:
                probe.bind(address[:2])
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise SystemExit(f"{address[0]}:{address[1]} is already in use by another server") from None
                raise


    if server.cfg.reuse_port:
        listeners.make_slots(server.cfg, server.log)


def when_ready(server):
    # gunicorn's "Listening at:" line is for operators (every socket, the master's pid); this one names the
    # address to open, the first bound (the service's own; METRICS_PORT's comes second).
    url = listeners.browsable_url(server.cfg.address[0]) if server.cfg.address else None
    if url:
        server.log.info("filesvc is serving %s (API docs: %s/docs)", url, url)
    if not server.cfg.preload_app:
        # The master loads the app's modules without building the app (no database pool, no thread): the
        # workers fork with them loaded and share their pages instead of each holding its own copy.
        from app.factory import load_modules

        load_modules()


def pre_fork(server, worker):
    if server.cfg.reuse_port:
        listeners.choose_slot(server.WORKERS.values(), worker)
    gc.freeze()


def worker_exit(server, worker):
    multiprocess.flush_before_exit()


def child_exit(server, worker):
    multiprocess.worker_exited(worker.pid)


def on_exit(server):
    multiprocess.remove(os.environ.get(multiprocess.VARIABLE))


def post_fork(server, worker):
    # The child starts with the master's signal handlers, which only queue a signal for the master's loop: a
    # stop (TERM) arriving while this worker boots would be swallowed, and the worker would serve on until
    # the master gives up on it. Until the worker sets its own, a signal does what it does by default.
    for number in (*server.SIGNALS, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)


def post_worker_init(worker):
    if worker.cfg.preload_app:
        # The master made the app: its database pools must not be shared across the fork. New ones are made
        # here, after gevent has patched `threading`, so their locks wait on the event loop.
        from app.db import after_fork

        after_fork(worker.wsgi)
    # Housekeeping is the server's own chore (SPEC §12): a greenlet per worker asks the database whether it is
    # due; at most one worker of all instances runs it at a time.
    from app.housekeeping import schedule

    schedule(worker.wsgi)
    # Everything the worker made while loading the app lives as long as the worker: out of the collector's
    # sight, a full collection scans only what requests leave behind, not the whole app each time.
    gc.collect()
    gc.freeze()
