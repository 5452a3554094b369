"""Malformed multipart bodies are 400 `validation_error` naming what is wrong, never 413 or 500, and store nothing."""
import io

import pytest

from tests.conftest import BACKEND_STORAGE, stored_files
from tests.support.api import PASSWORD

pytestmark = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])

PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="new.txt"\r\n\r\nnew content\r\n--b--\r\n'


def many_parts(count: int) -> bytes:
    return b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * count + PART


def long_header(size: int) -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nX-Padding: ' + b"p" * size
            + b"\r\n\r\nnew content\r\n--b--\r\n")


def headers_of_many_fields(count: int, size: int) -> bytes:
    """`count` small fields, each with a header of `size` bytes, before the file part."""
    field = b'--b\r\nContent-Disposition: form-data; name="x"\r\nX-Padding: ' + b"p" * size + b"\r\n\r\nv\r\n"
    return field * count + PART


# (Content-Type, body, what the message says)
MALFORMED = [
    ("multipart/form-data; boundary*=UTF-8''%E2%82%AC", PART, "boundary*="),
    ("multipart/form-data; boundary*=UTF-8''b", PART, "boundary*="),
    ("multipart/form-data; boundary=b; boundary*=UTF-8''b", PART, "boundary*="),
    ("multipart/form-data; boundary=\"" + "b" * 201 + "\"", PART, "RFC 2046"),
    ("multipart/form-data; boundary=\"b \"", PART, "RFC 2046"),
    ("multipart/form-data; boundary=\"b;b\"", PART, "RFC 2046"),
    ("multipart/form-data; boundary=", PART, "RFC 2046"),
    ("multipart/form-data; boundary=b", many_parts(5000), "more than 100 parts"),
    ("multipart/form-data; boundary=b", many_parts(101), "more than 100 parts"),
    ("multipart/form-data; boundary=b", long_header(200_000), "multipart headers are too long"),
    ("multipart/form-data; boundary=b", long_header(17_000), "multipart headers are too long"),
    ("multipart/form-data; boundary=b", long_header(3_000_000), "multipart headers are too long"),
    ("multipart/form-data; boundary=b", headers_of_many_fields(20, 1000), "multipart headers are too long"),
    ("multipart/form-data; boundary=b", b"preamble " * 3000 + PART, "multipart headers are too long"),
]


def upload_of(client, headers, content: bytes, name: str = "old.txt") -> dict:
    response = client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(content), name)})
    assert response.status_code == 201, response.json
    return response.json["data"]


@pytest.mark.parametrize("content_type, body, why", MALFORMED)
def test_malformed_multipart_is_400_on_upload_and_replace_and_stores_nothing(app, client, signed_in,
                                                                             content_type, body, why):
    before = upload_of(client, signed_in, b"old content")
    blobs = stored_files(app)
    for method, url in [("post", "/file/upload"), ("put", f"/file/update/{before['id']}")]:
        response = getattr(client, method)(url, headers=signed_in, data=body, content_type=content_type)
        assert response.status_code == 400, (url, response.json)
        error = response.json["error"]
        assert error["code"] == "validation_error"
        assert why in error["details"]["fields"]["file"]
        assert why in error["message"]
    assert stored_files(app) == blobs
    assert [blob.read_bytes() for blob in blobs] == [b"old content"]
    assert client.get("/file/list", headers=signed_in).json["data"]["total"] == 1
    assert client.get(f"/file/{before['id']}", headers=signed_in).json["data"] == before
    assert client.get(f"/file/download/{before['id']}", headers=signed_in).data == b"old content"


@pytest.mark.parametrize("body", [
    many_parts(99),  # 100 parts with the file
    long_header(15_000),
    headers_of_many_fields(10, 1000),
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nnew content\r\n--b--\r\n'
    + b"epilogue " * 300_000,  # what follows the closing boundary is not read
])
def test_bodies_within_the_limits_are_taken(client, signed_in, body):
    response = client.post("/file/upload", headers=signed_in, data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 201, response.json
    assert client.get(f"/file/download/{response.json['data']['id']}", headers=signed_in).data == b"new content"


@pytest.mark.parametrize("boundary", ["b", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "'()+_,-./:=?", "a b", "x" * 70, "x" * 200])
def test_every_boundary_rfc_2046_allows_is_taken(client, signed_in, boundary):
    body = PART.replace(b"--b", b"--" + boundary.encode())
    response = client.post("/file/upload", headers=signed_in, data=body,
                           content_type=f'multipart/form-data; boundary="{boundary}"')
    assert response.status_code == 201, response.json
    assert response.json["data"]["size"] == len(b"new content")


@pytest.mark.parametrize("content_type, body, why", [
    ("multipart/form-data; boundary*=UTF-8''%E2%82%AC", b"x", "boundary*="),
    ("multipart/form-data; boundary=\"a\tb\"", b"x", "RFC 2046"),
    ("multipart/form-data", b"x", "no boundary"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * 1500
     + b"--b--\r\n", "too many parts"),
])
def test_form_bodies_of_other_routes_are_400_too(client, content_type, body, why):
    response = client.post("/signin", data=body, content_type=content_type)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "validation_error"
    assert why in response.json["error"]["details"]["fields"]["body"]


def test_a_multipart_sign_in_still_works(client):
    client.post("/signup", json={"id": "ann@example.com", "password": PASSWORD})
    response = client.post("/signin", data={"id": "ann@example.com", "password": PASSWORD},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.json


def test_an_oversize_form_body_is_still_413(client):
    body = b'--b\r\nContent-Disposition: form-data; name="id"\r\n\r\n' + b"x" * (2 << 20) + b"\r\n--b--\r\n"
    response = client.post("/signin", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413 and response.json["error"]["code"] == "file_too_large"
