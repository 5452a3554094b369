"""Digests: `Repr-Digest` (RFC 9530) on every download answer, and the optional `sha256` part of an upload or
update, before or after the file, checked against the bytes received."""
import base64
import hashlib
import io
import json
import os

import pytest

from tests.conftest import BACKEND_STORAGE, stored_files
from tests.support.api import error_code, sha, uploaded
from tests.support.live import live_token, send

pytestmark = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])


def repr_digest(content: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(content).digest()).decode() + ":"


# -- Repr-Digest -------------------------------------------------------------------------------


def test_every_download_answer_carries_the_digest_of_the_whole_file(client, signed_in):
    content = os.urandom(10_000)
    url = f"/file/download/{uploaded(client, signed_in, content, 'r.bin')['id']}"
    expected = repr_digest(content)
    whole = client.get(url, headers=signed_in)
    assert whole.status_code == 200 and whole.headers["Repr-Digest"] == expected
    part = client.get(url, headers={**signed_in, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == content[100:200]
    assert part.headers["Repr-Digest"] == expected  # the whole file's, not the part's
    not_modified = client.get(url, headers={**signed_in, "If-None-Match": f'"{sha(content)}"'})
    assert not_modified.status_code == 304 and not_modified.headers["Repr-Digest"] == expected
    head = client.head(url, headers=signed_in)
    assert head.status_code == 200 and head.data == b"" and head.headers["Repr-Digest"] == expected
    head_part = client.head(url, headers={**signed_in, "Range": "bytes=0-0"})
    assert head_part.status_code == 206 and head_part.headers["Repr-Digest"] == expected
    assert "Repr-Digest" in whole.headers["Access-Control-Expose-Headers"]


def test_a_file_links_answers_carry_it_too(client, signed_in):
    content = os.urandom(5000)
    data = uploaded(client, signed_in, content, "shared.bin")
    path = client.post(f"/file/{data['id']}/link", headers=signed_in).json["data"]["path"]
    expected = repr_digest(content)
    for headers, status in (({}, 200), ({"Range": "bytes=10-19"}, 206), ({"If-None-Match": f'"{sha(content)}"'}, 304)):
        response = client.get(path, headers=headers)  # no token: the link is the credential
        assert response.status_code == status and response.headers["Repr-Digest"] == expected, headers
    head = client.head(path)
    assert head.status_code == 200 and head.headers["Repr-Digest"] == expected


def test_the_digest_follows_the_content(client, signed_in):
    data = uploaded(client, signed_in, b"", "empty.txt")
    url = f"/file/download/{data['id']}"
    assert client.get(url, headers=signed_in).headers["Repr-Digest"] == (
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:")  # RFC 9530's own example of empty content
    client.put(f"/file/update/{data['id']}", headers=signed_in, data={"file": (io.BytesIO(b"new"), "n.txt")})
    assert client.get(url, headers=signed_in).headers["Repr-Digest"] == repr_digest(b"new")


def test_the_document_describes_the_digest_and_the_sha256_part(client):
    document = client.get("/openapi.json").json
    download = document["paths"]["/file/download/{file_id}"]["get"]["responses"]
    for status in ("200", "206", "304"):
        assert "Repr-Digest" in download[status]["headers"], status
    for path, method in (("/file/upload", "post"), ("/file/update/{file_id}", "put")):
        schema = document["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert schema["required"] == ["file"]
        assert schema["properties"]["sha256"]["pattern"] == "^[0-9a-fA-F]{64}$"


# -- the sha256 part ---------------------------------------------------------------------------


def body_with(content: bytes, sha256: bytes | None, before: bool, name: str = "new.txt") -> bytes:
    file_part = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
                 b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n")
    digest_part = b"" if sha256 is None else (
        b'--b\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n' + sha256 + b"\r\n")
    parts = digest_part + file_part if before else file_part + digest_part
    return parts + b"--b--\r\n"


def post(client, headers, body: bytes):
    return client.post("/file/upload", headers=headers, data=body, content_type="multipart/form-data; boundary=b")


def put(client, headers, file_id: int, body: bytes):
    return client.put(f"/file/update/{file_id}", headers=headers, data=body,
                      content_type="multipart/form-data; boundary=b")


def assert_bad_sha256(response) -> None:
    assert response.status_code == 400, response.json
    assert error_code(response) == "validation_error"
    assert set(response.json["error"]["details"]["fields"]) == {"sha256"}


@pytest.mark.parametrize("before", [True, False], ids=["sha256-first", "file-first"])
def test_a_matching_sha256_is_accepted_in_either_case(app, client, signed_in, before):
    content = os.urandom(3000)
    for digest in (sha(content), sha(content).upper()):
        response = post(client, signed_in, body_with(content, digest.encode(), before))
        assert response.status_code == 201, response.json
        assert response.json["data"]["sha256"] == sha(content)
    assert [blob.read_bytes() == content for blob in stored_files(app)] == [True, True]


@pytest.mark.parametrize("before", [True, False], ids=["sha256-first", "file-first"])
def test_a_sha256_that_does_not_match_is_400_and_stores_nothing(app, client, signed_in, before):
    content = b"what was sent"
    response = post(client, signed_in, body_with(content, sha(b"what was meant").encode(), before))
    assert_bad_sha256(response)
    assert sha(content) in response.json["error"]["details"]["fields"]["sha256"]  # says what was received
    assert stored_files(app) == []
    assert client.get("/file/list", headers=signed_in).json["data"]["total"] == 0
    assert client.get("/user/usage", headers=signed_in).json["data"]["bytes"] == 0


@pytest.mark.parametrize("before", [True, False], ids=["sha256-first", "file-first"])
def test_an_update_whose_sha256_does_not_match_leaves_the_old_file(app, client, signed_in, before):
    old = uploaded(client, signed_in, b"old content", "old.txt")
    response = put(client, signed_in, old["id"], body_with(b"new content", sha(b"other").encode(), before))
    assert_bad_sha256(response)
    assert client.get(f"/file/{old['id']}", headers=signed_in).json["data"] == old
    assert client.get(f"/file/download/{old['id']}", headers=signed_in).data == b"old content"
    assert [blob.read_bytes() for blob in stored_files(app)] == [b"old content"]
    assert client.get("/user/usage", headers=signed_in).json["data"]["bytes"] == len(b"old content")
    matching = put(client, signed_in, old["id"], body_with(b"new content", sha(b"new content").encode(), before))
    assert matching.status_code == 200 and matching.json["data"]["name"] == "new.txt"
    assert [blob.read_bytes() for blob in stored_files(app)] == [b"new content"]


MALFORMED = [
    b"",
    b"abc",
    b"0" * 63,
    b"0" * 65,
    b"g" * 64,
    b" " + b"0" * 63,
    b"0" * 63 + b"\n",
    "é".encode() * 32,
    b"0" * 2000,  # longer than any field read beside the file
]


@pytest.mark.parametrize("before", [True, False], ids=["sha256-first", "file-first"])
def test_a_malformed_sha256_is_400_on_upload_and_update_and_stores_nothing(app, client, signed_in, before):
    old = uploaded(client, signed_in, b"old content", "old.txt")
    for value in MALFORMED:
        assert_bad_sha256(post(client, signed_in, body_with(b"content", value, before)))
        assert_bad_sha256(put(client, signed_in, old["id"], body_with(b"content", value, before)))
    assert [blob.read_bytes() for blob in stored_files(app)] == [b"old content"]
    assert client.get("/file/list", headers=signed_in).json["data"]["total"] == 1
    assert client.get(f"/file/{old['id']}", headers=signed_in).json["data"] == old


def test_two_sha256_parts_are_400(app, client, signed_in):
    content = b"content"
    digest = b'--b\r\nContent-Disposition: form-data; name="sha256"\r\n\r\n' + sha(content).encode() + b"\r\n"
    for body in (digest + body_with(content, sha(content).encode(), before=True),
                 digest + body_with(content, sha(content).encode(), before=False)):
        assert_bad_sha256(post(client, signed_in, body))
    assert stored_files(app) == []


def test_parts_after_the_file_keep_the_multipart_limits(app, client, signed_in):
    content = b"content"
    long_headers = (b'--b\r\nContent-Disposition: form-data; name="later"\r\nX-Padding: ' + b"p" * 20_000
                    + b"\r\n\r\nx\r\n")
    body = body_with(content, None, before=False).removesuffix(b"--b--\r\n") + long_headers + b"--b--\r\n"
    response = post(client, signed_in, body)
    assert response.status_code == 400 and "headers are too long" in response.json["error"]["message"]
    many = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * 150
    body = body_with(content, None, before=False).removesuffix(b"--b--\r\n") + many + b"--b--\r\n"
    response = post(client, signed_in, body)
    assert response.status_code == 400 and "more than 100 parts" in response.json["error"]["message"]
    assert stored_files(app) == []


def test_a_trailing_sha256_over_a_chunked_body_through_gunicorn(app, live_server):
    token = live_token(live_server)
    content = os.urandom(3 << 20)
    for digest, status in ((sha(content), 201), (sha(content[1:]), 400)):
        body = body_with(content, digest.encode(), before=False, name="big.bin")
        pieces = [body[i:i + 100_000] for i in range(0, len(body), 100_000)]
        got, _, answer = send(live_server, "POST", "/file/upload", token, pieces, "multipart/form-data; boundary=b",
                              chunked=True)
        assert got == status, answer
    [blob] = stored_files(app)
    assert sha(blob.read_bytes()) == sha(content)
    listed = json.loads(send(live_server, "GET", "/file/list", token, [], "text/plain")[2])["data"]
    assert listed["total"] == 1 and listed["items"][0]["sha256"] == sha(content)
