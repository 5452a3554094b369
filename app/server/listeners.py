"""Listening sockets per worker slot, made once by gunicorn's master and handed to each worker of the slot.

With SO_REUSEPORT every worker has a listening socket of its own, and the kernel spreads new connections
over them. gunicorn makes that socket in the worker, so a worker that stops closes it, and every
connection the kernel had already queued on it is reset: a graceful reload dropped requests. Here the
master makes one socket per slot and keeps it open; a worker takes its slot's socket, and the worker that
replaces it (a reload, a restart after a crash) takes the same one, with whatever waits on it.
"""
import logging
from collections import Counter
from typing import Any, Iterable

from gunicorn import sock as gunicorn_sock

_make_sockets = gunicorn_sock.create_sockets
SLOTS: list[list[Any]] = []
_chosen: int | None = None  # set in the master just before a fork; the child reads its copy


def make_slots(cfg, log) -> None:
    """In the master, once: a set of listening sockets per worker, and gunicorn told to use them."""
    if not SLOTS:
        SLOTS.extend(_make_sockets(cfg, log) for _ in range(max(1, cfg.workers)))
        log.error_log.addFilter(_name_the_addresses)
    gunicorn_sock.create_sockets = slot_sockets


def _name_the_addresses(record: logging.LogRecord) -> bool:
    """gunicorn's "Listening at:" line names the master's own sockets, of which it has none here: it names
    the slots' address instead, e.g. `Listening at: http://127.0.0.1:3000 (2 sockets, one per worker)`."""
    if record.msg == "Listening at: %s (%s)" and isinstance(record.args, tuple) and record.args[0] == "" and SLOTS:
        addresses = ",".join(sorted({str(listener) for listener in SLOTS[0]}))
        record.msg = "Listening at: %s (%d sockets, one per worker; master %s)"
        record.args = (addresses, len(SLOTS), record.args[1])
    return True


def browsable_url(address) -> str | None:
    """The URL a person on this machine opens for a bound address: `('127.0.0.1', 3000)` gives
    `http://127.0.0.1:3000`; an address that means every interface (`0.0.0.0`, `::`) gives `localhost`,
    since a browser cannot open "any"; a unix socket or an inherited descriptor gives None."""
    if not isinstance(address, tuple):
        return None
    host, port = address[0], address[1]
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def choose_slot(workers: Iterable[Any], worker: Any) -> None:
    """In the master, before forking `worker`: the slot the fewest running workers use."""
    global _chosen
    used = Counter(getattr(w, "slot", None) for w in workers)
    _chosen = worker.slot = min(range(len(SLOTS)), key=lambda slot: used[slot])


def slot_sockets(cfg, log, fds=None):
    """What gunicorn calls in a new worker to get its listening sockets: its slot's, made by the master."""
    if fds is not None or _chosen is None:  # the master's own calls (re-exec, no slots): gunicorn's
        return _make_sockets(cfg, log, fds)
    return SLOTS[_chosen]
