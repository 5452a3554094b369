"""Work that holds a core or a blocking C call runs on a real OS thread, so the event loop serves on.

The server runs each worker process as one event loop (gunicorn's gevent worker, see gunicorn.conf.py):
thousands of slow transfers cost a greenlet each, not a thread each. A greenlet that computes, or sits in a
C call that does not yield to the loop (argon2, SHA-256 of an upload's chunks, fsync), holds every other
request of its process meanwhile. Those calls release the GIL, so on a thread of gevent's pool the loop
keeps answering while they run, and two of them use two cores.

Outside the event loop (the Flask test client, `flask` commands, a threaded server) the same calls run
on plain threads, or inline where waiting is all the caller would do.
"""
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")

# Threads for the calls above, per process: argon2 is the largest (19 MiB and a few tens of ms each), and more
# of them than cores only makes each one slower; uploads' chunks wait in the queue for a moment at worst.
POOL_SIZE = 4
# The pool's threads run at a lower priority (Linux: a thread's own nice value): when every core is busy
# hashing passwords, the kernel still gives the event loops the CPU first, so the requests they serve are
# not queued behind sign-ins. Measured in bench/README.md ("Sign-ins beside the loop").
BACKGROUND_NICE = 10
_niced: set[int] = set()


class Pending(Protocol):
    def ready(self) -> bool: ...

    def get(self) -> Any: ...


def event_loop() -> bool:
    """True in a process whose sockets and threads gevent has patched (a server worker)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a runtime dependency
        return False
    return monkey.is_module_patched("socket")


def blocking(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, on a real thread when this process is an event loop; its result or its exception."""
    if not event_loop():
        return call(*args)
    return _gevent_pool().apply(_in_background, (call, *args))


def start(call: Callable[..., Any], *args: Any) -> Pending:
    """Begin `call(*args)` on a real thread; `.get()` waits for it and returns its result or raises."""
    if event_loop():
        return _gevent_pool().spawn(_in_background, call, *args)
    return _FuturePending(_executor().submit(call, *args))


def detach(call: Callable[..., Any], *args: Any) -> None:
    """Run `call(*args)` beside the caller, which does not wait for it (a message's delivery and retries):
    a greenlet in the event loop (its waits are the loop's), else a daemon thread."""
    if event_loop():
        import gevent

        gevent.spawn(call, *args)
        return
    threading.Thread(target=call, args=args, daemon=True, name="detached").start()


def _in_background(call: Callable[..., T], *args: Any) -> T:
    thread = threading.get_native_id()
    if thread not in _niced:
        _niced.add(thread)
        try:
            os.setpriority(os.PRIO_PROCESS, thread, BACKGROUND_NICE)  # this thread only, on Linux
        except (OSError, AttributeError):  # not permitted, or not Linux: the same work at the same priority
            pass
    return call(*args)


class _FuturePending:
    def __init__(self, future: Future):
        self.future = future

    def ready(self) -> bool:
        return self.future.done()

    def get(self) -> Any:
        return self.future.result()


_pool = None
_plain: ThreadPoolExecutor | None = None


def _gevent_pool():
    """The hub's own pool of real threads, sized once per process (a fork gets a new hub)."""
    global _pool
    from gevent import get_hub

    pool = get_hub().threadpool
    if pool is not _pool:
        pool.maxsize = POOL_SIZE
        _pool = pool
    return pool


def _executor() -> ThreadPoolExecutor:
    global _plain
    if _plain is None:
        _plain = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="blocking")
    return _plain
