"""Faults on demand: a TCP proxy that can lose its server, and the worker processes of a gunicorn."""
import os
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from tests.conftest import free_port


class TcpProxy:
    """A loopback TCP proxy to `target`, which a test can cut, blackhole and restore.

    cut: the server is gone (every connection closed, new ones refused), as when it stops or restarts.
    blackhole: the server stops answering (connections accepted, nothing gets through), as a hung
    server or a lost network does; only the clients' timeouts end the wait.
    """

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.commit_after: bytes | None = None  # see lose_commit_answer
        self.commits_lost = 0
        self.port = free_port()
        self.mode = "up"
        self.bytes_from_target = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was shut down by cut()
                return
            self._track(client)
            if self.mode == "blackhole":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._close(client)
                continue
            upstream.settimeout(None)
            self._track(upstream)
            threading.Thread(target=self._pump_to_target, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_target: bool) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    continue
                sink.sendall(data)
                if from_target:
                    with self._lock:
                        self.bytes_from_target += len(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _pump_to_target(self, source: socket.socket, sink: socket.socket) -> None:
        """Client → server, watching for the statement after which the answer to a COMMIT is to be lost."""
        armed = False
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    continue
                marker = self.commit_after
                if marker is not None and marker in data:
                    armed = True
                if armed and b"\x03COMMIT" in data.upper():  # MySQL COM_QUERY "COMMIT"
                    self.commit_after, armed = None, False
                    with self._lock:
                        self.commits_lost += 1
                    self._close(source)  # the client's side goes first: the server's answer finds it gone
                    sink.sendall(data)
                    time.sleep(0.3)  # the server commits
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def lose_commit_answer(self, after: bytes) -> None:
        """The next COMMIT sent on a connection that sent `after` (e.g. b"INSERT INTO files") reaches the
        server, and then the connection drops before the server's answer comes back: the client cannot
        know whether it took effect."""
        self.commit_after = after

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)

    def cut(self) -> None:
        self.mode = "down"
        if self._listener is not None:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it (Linux)
            self._listener.close()
            self._listener = None
        self._close_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def restore(self) -> None:
        """Back to forwarding; connections that lost bytes while blackholed are closed, as a partition ends."""
        if self.mode == "blackhole":
            self._close_all()
        self.mode = "up"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.cut()


def open_files(pid: int) -> list[str]:
    """What each of a process's file descriptors points at: a path, or `socket:[<inode>]`."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed while we looked
            continue
    return targets


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets a process holds open."""
    return {target[len("socket:["):-1] for target in open_files(pid) if target.startswith("socket:[")}


def tcp_inodes(*, local_port: int | None = None, remote_port: int | None = None,
               established: bool = False) -> set[str]:
    """Inodes of this host's TCP sockets with that local or remote port (from /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(fields[i].rsplit(":", 1)[1], 16) for i in (1, 2))
            if local_port not in (None, local) or remote_port not in (None, remote):
                continue
            if established and fields[3] != "01":  # 01: ESTABLISHED
                continue
            inodes.add(fields[9])
    return inodes


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's children: its workers."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            pids.add(int(stat.parent.name))
    return pids


def wait_for(condition: Callable[[], object], timeout: float = 10, what: str = "the condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
