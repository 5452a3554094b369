"""Calls to a live server (a real gunicorn) over HTTP/1.1; each answers (status, headers, body)."""
import http.client
import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from tests.support.api import PASSWORD, bearer


def call(server, method: str, path: str, headers: dict, body: bytes | None = None):
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers, encode_chunked="Transfer-Encoding" in headers)
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def live_user(server) -> dict[str, str]:
    status, _, body = call(server, "POST", "/signup", {"Content-Type": "application/json"},
                           json.dumps({"id": "ann@example.com", "password": PASSWORD}).encode())
    assert status == 201
    return bearer(json.loads(body)["data"]["access_token"])


def live_download(server, user, file_id) -> bytes:
    status, _, body = call(server, "GET", f"/file/download/{file_id}", user)
    assert status == 200
    return body


def live_token(server) -> str:
    request = urllib.request.Request(
        server.url + "/signup", data=json.dumps({"id": "live@example.com", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["access_token"]


def multipart(content: bytes, name: str) -> tuple[bytes, bytes, str]:
    boundary = "b" + os.urandom(8).hex()
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send(server, method: str, path: str, token: str, pieces, content_type: str, chunked: bool = False,
         between=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request with the body sent piece by piece (`between` runs after the first piece)."""
    connection = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    connection.putrequest(method, path)
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", content_type)
    if chunked:
        connection.putheader("Transfer-Encoding", "chunked")
    else:
        connection.putheader("Content-Length", str(sum(len(p) for p in pieces)))
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    try:
        for index, piece in enumerate(pieces):
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if index == 0 and between:
                between()
        if chunked:
            connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered (a 413) and closed before taking the rest; its answer is still to be read
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def get(server, path: str, token: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.getheaders()), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def send_refused(*args, **kwargs) -> tuple[int, dict, bytes]:
    """`send` for a body the server refuses part-way: when its close resets the connection before
    the answer is read (a race in TCP itself, not in the service), send again."""
    for attempt in range(3):
        try:
            return send(*args, **kwargs)
        except (ConnectionResetError, http.client.RemoteDisconnected):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
