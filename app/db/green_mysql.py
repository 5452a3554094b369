"""mysqlclient for the event loop: a statement is sent, the loop serves other requests while the server works,
and the answer is read once it has arrived.

mysqlclient's own `query()` waits inside C for the whole round trip, holding the loop and so every other
request of the process: for a query's tenth of a millisecond that costs little, but a slow or frozen database
would stall the whole worker for its read timeout. Its C API also offers the round trip in two halves
(`send_query`, `read_query_result`) and the socket (`fileno`): between them the loop waits on the socket.
"""
import gevent.socket
from MySQLdb import OperationalError
from MySQLdb.connections import Connection

LOST = 2013  # CR_SERVER_LOST: SQLAlchemy takes it for a lost connection and drops it from the pool


class GreenConnection(Connection):
    def __init__(self, *args, **kwargs):
        self._wait_seconds = kwargs.get("read_timeout")
        super().__init__(*args, **kwargs)

    def query(self, query):
        if isinstance(query, bytearray):
            query = bytes(query)
        self.send_query(query)
        try:
            gevent.socket.wait_read(self.fileno(), timeout=self._wait_seconds,
                                    timeout_exc=OperationalError(LOST, "Lost connection to server during query (timeout)"))
        except OperationalError:
            self.close()  # the answer may still come: this connection can never be used again
            raise
        self.read_query_result()

    def ping(self, *_args):
        self.query(b"DO 1")

    def commit(self):
        self.query(b"COMMIT")

    def rollback(self):
        self.query(b"ROLLBACK")
