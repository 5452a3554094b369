"""Calls through Flask's test client, as a user would make them."""
import base64
import hashlib
import io
import random
from urllib.parse import urlsplit

PASSWORD = "correct horse battery"
NOISE = random.Random(2026).randbytes(4096)  # bytes no content sniffer recognises
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}


def sign_up(client, login: str = "ann@example.com", password: str = PASSWORD, **kwargs) -> dict:
    response = client.post("/signup", json={"id": login, "password": password}, **kwargs)
    assert response.status_code == 201, response.json
    return response.json["data"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(client, headers, content: bytes, name: str = "notes.txt"):
    return client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(content), name)})


def uploaded(client, headers, content: bytes, name: str = "notes.txt") -> dict:
    response = upload(client, headers, content, name)
    assert response.status_code == 201, response.json
    return response.json["data"]


def update(client, headers, file_id: int, content: bytes, name: str = "notes.txt"):
    return client.put(f"/file/update/{file_id}", headers=headers, data={"file": (io.BytesIO(content), name)})


def error_code(response) -> str:
    return response.json["error"]["code"]


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def create(client, headers, length: int, name: str | None = "notes.txt", **extra):
    meta = {"Upload-Metadata": f"filename {b64(name)},filetype {b64('text/plain')}"} if name is not None else {}
    return client.post("/file/uploads", headers={**headers, "Upload-Length": str(length), **meta, **extra})


def created(client, headers, length: int, name: str | None = "notes.txt") -> str:
    response = create(client, headers, length, name)
    assert response.status_code == 201, response.json
    return urlsplit(response.headers["Location"]).path


def patch(client, headers, path: str, offset: int, data: bytes, **extra):
    return client.patch(path, headers={**headers, **CHUNK, "Upload-Offset": str(offset), **extra}, data=data)


def offset_of(client, headers, path: str) -> int:
    response = client.head(path, headers=headers)
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])
