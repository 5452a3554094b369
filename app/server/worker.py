"""gunicorn's gevent worker, with the connection rules of the contract (SPEC §13) and JSON refusals.

One event loop per process: a connection costs a greenlet (a few KiB), so a phone on a train holds only
its own transfer, never a thread the next request needs. What computes or blocks in C runs on real
threads (app.threads).

On top of gunicorn's worker:
- Timeouts by phase of the connection, each wait for bytes bounded on its own: the next request's first
  byte within `KEEPALIVE_TIMEOUT` of the last answer (the first request's within `HEADER_TIMEOUT`), the
  rest of the headers within `HEADER_TIMEOUT`, and each piece of a body within `BODY_TIMEOUT`. gunicorn's
  own bounds the headers of every request by its keep-alive timeout and a body not at all.
- An answer given before the body was read (a refusal) keeps the connection only when little of the body
  is left to skip; otherwise it says `Connection: close`, and the socket is closed after a lingering read,
  so the client reads the answer rather than a reset.
- Listening sockets come from the master (app.server.listeners), so a worker that stops leaves the connections
  queued on its socket to the worker that replaces it.
- gunicorn's own refusals (request line or header too long, malformed request) are in the API's JSON
  envelope, with `X-Request-ID` and CORS, like every other error.
"""
import errno
import inspect
import json
import os
import resource
import socket
import time
import uuid
from datetime import timedelta
from functools import partial

import gevent
import gevent.pool
from gevent.server import StreamServer
from gunicorn import http, util
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.workers import base
from gunicorn.workers.ggevent import GeventWorker

from app.errors import ValidationError, for_status
from app.server import multiprocess
from app.server.redaction import redact_link_tokens

# What is replaced, as this module knows it: a change in gunicorn must stop the server, not pass unseen.
PATCHED_SIGNATURE = ["sock", "status_int", "reason", "mesg"]
# Body bytes an early answer may leave unread and still keep the connection: read and dropped before the next request.
SKIP_LIMIT = 64 << 10
# After an answer that closes the connection with a body still arriving: how long its bytes are read and dropped.
LINGER_SECONDS, LINGER_READ_SECONDS = 5.0, 1.0
RECV_MAX = 64 << 10  # bytes one recv() asks for at most
SENDFILE_STEP = 1 << 20  # bytes per sendfile(2) call: other greenlets run between two


def write_json_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    kind, message = for_status(status), message or reason.lower()
    error = ValidationError.field("request", message) if kind is ValidationError else kind(message)
    body = json.dumps(error.envelope(), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def check_patch_target() -> None:
    """Fail loudly if gunicorn no longer renders its refusals through `util.write_error(sock, status, reason, mesg)`."""
    original = getattr(util, "write_error", None)
    if original is None or list(inspect.signature(original).parameters) != PATCHED_SIGNATURE:
        raise RuntimeError("gunicorn.util.write_error is not what app.server.worker expects; check the upgrade")
    if "util.write_error(" not in inspect.getsource(base.Worker.handle_error):
        raise RuntimeError("gunicorn's Worker.handle_error no longer calls util.write_error; check the upgrade")


def seconds(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise RuntimeError(f"{name} must be a number of seconds above 0, not {value}")
    return value


class ClientSocket:
    """The client's socket as gunicorn reads and writes it, every wait bounded by the connection's phase.

    Reading: a request's first byte within the idle timeout, its headers within `HEADER_TIMEOUT`, each
    piece of its body within `BODY_TIMEOUT`. Writing: each piece of an answer within `BODY_TIMEOUT` of the
    previous one, however slowly the client reads, so only a reader that stopped is dropped. Waiting too long
    for a request closes the connection; for a body, the body ends there (the app sees the client go, werkzeug's
    ClientDisconnected) and the answer closes the connection; for a reader, the download ends short.
    """

    def __init__(self, sock: socket.socket, header_timeout: float, keepalive_timeout: float, body_timeout: float):
        self.sock = sock
        self.header_timeout, self.keepalive_timeout, self.body_timeout = header_timeout, keepalive_timeout, body_timeout
        self.idle_timeout: float | None = header_timeout
        self.deadline: float | None = None  # when the headers must be complete; None while reading a body
        self.body_stalled = False
        self.received = self.sent = 0  # bytes, since the metrics last took them (JsonErrorWorker.count_bytes)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)

    def await_request(self, first: bool) -> None:
        self.idle_timeout = self.header_timeout if first else self.keepalive_timeout
        self.deadline = None

    def read_body(self) -> None:
        self.idle_timeout, self.deadline = None, None

    def recv(self, size: int) -> bytes:
        if self.idle_timeout is not None:  # waiting for a request's first byte
            timeout = self.idle_timeout
        elif self.deadline is not None:  # inside its headers
            timeout = max(self.deadline - time.monotonic(), 0.001)
        else:
            if self.body_stalled:
                return b""
            timeout = self.body_timeout
        self.sock.settimeout(timeout)
        try:
            # gunicorn asks for up to a MiB while a body is being read: a buffer that size is made (and
            # shrunk) on every call, which made a 200 MiB upload half again as slow (bench/README.md).
            data = self.sock.recv(min(size, RECV_MAX))
        except socket.timeout:
            if self.idle_timeout is not None or self.deadline is not None:
                raise
            # A body that stopped arriving ends here, as if the client had closed: what arrived before is
            # handed on (a resumable upload keeps it), the request is answered, and the connection closed.
            self.body_stalled = True
            return b""
        finally:
            self.sock.settimeout(None)
        if self.idle_timeout is not None and data:
            self.idle_timeout, self.deadline = None, time.monotonic() + self.header_timeout
        self.received += len(data)
        return data

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        self.sock.settimeout(self.body_timeout)  # per send(): each returns as soon as any of it is sent
        try:
            while view:
                sent = self.sock.send(view)
                self.sent += sent
                view = view[sent:]
        finally:
            self.sock.settimeout(None)

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        """os.sendfile(2) from `file` (its position untouched), waiting on the loop whenever the client's
        buffer is full: the kernel copies the bytes, and a slow reader costs no thread. (gevent's own
        sendfile reads and sends 8 KiB at a time in Python.)"""
        out, source, sent = self.sock.fileno(), file.fileno(), 0
        while count is None or sent < count:
            step = SENDFILE_STEP if count is None else min(count - sent, SENDFILE_STEP)
            try:
                n = os.sendfile(out, source, offset + sent, step)
            except BlockingIOError:
                gevent.socket.wait_write(out, timeout=self.body_timeout, timeout_exc=socket.timeout("write timed out"))
                continue
            if n == 0:
                break
            sent += n
            self.sent += n
        return sent


class Response(wsgi.Response):
    """gunicorn's response without its `Server: gunicorn` line: which software serves is nobody's business."""

    def default_headers(self) -> list[str]:
        return [line for line in super().default_headers() if not line.startswith("Server:")]


def unread_body(req) -> int | None:
    """Bytes of the request's body not read yet; None when that is not known (a chunked body)."""
    body = req.body
    if body is None:
        return 0
    if isinstance(body.reader, LengthReader):
        return body.reader.length
    return None if not getattr(body.reader, "finished", False) else 0


class JsonErrorWorker(GeventWorker):
    def init_process(self) -> None:
        # Worker.handle_error renders through util.write_error; this process serves only the API.
        if util.write_error is not write_json_error:
            check_patch_target()
            util.write_error = write_json_error
        # A malformed request line, a failure while a response streams, the access log if turned on: each
        # writes the URI, and a file link's URI holds its token.
        redact_link_tokens(self.log.error_log)
        redact_link_tokens(self.log.access_log)
        self.header_timeout = seconds("HEADER_TIMEOUT", 10)
        self.keepalive_timeout = seconds("KEEPALIVE_TIMEOUT", 5)
        self.body_timeout = seconds("BODY_TIMEOUT", 60)
        self.metrics = None
        self.metrics_port = int(os.environ.get("METRICS_PORT") or 0)
        if multiprocess.metrics_wanted():
            from app import metrics  # not before: prometheus-client reads PROMETHEUS_MULTIPROC_DIR on import

            self.metrics = metrics
        raise_open_files_limit(self.worker_connections)
        super().init_process()

    def run(self) -> None:
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(listener, handle=partial(self.handle, listener), spawn=gevent.pool.Pool(self.worker_connections))
            if self.cfg.workers > 1 and not self.cfg.reuse_port:  # one shared socket: take turns accepting
                server.max_accept = 1
            server.start()
            servers.append(server)

        while self.alive:  # a stop (TERM, HUP in the master) is seen within a tenth of a second
            self.notify()
            gevent.sleep(0.1)

        try:
            for server in servers:
                server.close()  # this process's copy: the master keeps the socket, and what waits on it
            deadline = time.time() + self.cfg.graceful_timeout
            while time.time() < deadline:
                if all(server.pool.free_count() == server.pool.size for server in servers):
                    return
                self.notify()
                gevent.sleep(0.1)
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
            for server in servers:
                server.stop(timeout=1)
        except Exception:
            self.log.exception("error while stopping")

    def handle(self, listener, client, addr) -> None:
        """HTTP/1.1 on one connection, request after request, until either side closes it or a timeout."""
        client.setblocking(1)
        conn = ClientSocket(client, self.header_timeout, self.keepalive_timeout, self.body_timeout)
        parser = http.get_parser(self.cfg, conn, addr)
        listener_name = listener.getsockname()
        req = None
        linger = False
        try:
            # A stopping worker still answers a request that arrives on a kept connection (with
            # `Connection: close`): closing there would race the client's next request.
            first = True
            while True:
                conn.await_request(first)
                req = None
                req = next(parser)
                if not req:
                    break
                first = False
                conn.read_body()
                keep, linger = self.serve(listener_name, req, conn, addr)
                if not keep:
                    break
        except (StopIteration, http.errors.NoMoreData):
            pass
        except OSError as e:  # a timeout, a reset: nobody to answer
            if e.errno not in (None, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                self.log.debug("socket error: %s", e)
        except Exception as e:
            self.handle_error(req, client, addr, e)
        finally:
            if linger:
                lingering_close(client)
            util.close(client)
            self.count_bytes(conn)

    def count_bytes(self, conn: ClientSocket) -> None:
        if self.metrics is not None:
            self.metrics.transferred(conn.received, conn.sent)
            conn.received = conn.sent = 0

    def serve(self, listener_name, req, sock, addr) -> tuple[bool, bool]:
        """Answer one request; (keep the connection, read what the client still sends before closing it)."""
        resp = None
        early = {"unread": 0}

        def start_response(status, headers, exc_info=None):
            # An answer before the body is read: skip a small rest before the next request, or close.
            unread = unread_body(req)
            early["unread"] = unread
            if unread is None or unread > SKIP_LIMIT or sock.body_stalled:
                resp.force_close()
            return resp.start_response(status, headers, exc_info)

        try:
            self.cfg.pre_request(self, req)
            request_start = time.time()
            resp, environ = wsgi.create(req, sock, addr, listener_name, self.cfg, response_class=Response)
            environ["wsgi.multithread"] = True
            # Set by the server alone (a client's headers arrive as HTTP_*): this request came in on the
            # loopback metrics port, where GET /metrics needs no token.
            if self.metrics_port and isinstance(listener_name, tuple) and listener_name[1] == self.metrics_port:
                environ[multiprocess.METRICS_LISTENER] = True
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            if not self.alive:
                resp.force_close()
            respiter = self.wsgi(environ, start_response)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, _elapsed(request_start))
                if hasattr(respiter, "close"):
                    respiter.close()
            unread = early["unread"]
            if resp.should_close():
                return False, unread is None or unread > 0
            return True, False
        except (gevent.GreenletExit, SystemExit):
            return False, False
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:
                # Too late for an error answer: the client sees the connection end short of Content-Length.
                self.log.exception("Error handling request")
                return False, False
            raise
        finally:
            self.count_bytes(sock)
            try:
                self.cfg.post_request(self, req, environ if resp is not None else {}, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


def _elapsed(started: float) -> timedelta:
    return timedelta(seconds=time.time() - started)


def lingering_close(sock: socket.socket) -> None:
    """Say we are done, then read and drop what the client still sends, for a while, before closing.

    Closing a socket with unread bytes in it makes the kernel send a reset, and a reset can reach the
    client before it has read the answer already sent: the client would see "connection reset" instead
    of the refusal.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        stop = time.monotonic() + LINGER_SECONDS
        sock.settimeout(LINGER_READ_SECONDS)
        while time.monotonic() < stop and sock.recv(1 << 16):
            pass
    except OSError:
        pass


def raise_open_files_limit(connections: int) -> None:
    """A connection is a descriptor: let the process open as many as its hard limit allows, if it needs more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256  # database, storage, logs
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
