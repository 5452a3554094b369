"""Finding and previewing files (SPEC §14) through HTTP, on SQLite and MySQL: search, type filter and sort of
/file/list; thumbnails of real images made with Pillow, on local disk and S3, through links too."""
import base64
import hashlib
import io
import json
import struct
import threading
import time
import zlib

import pytest
import sqlalchemy as sa
from PIL import Image, ImageFile

from app.services import files as file_service
from app.services import thumbnails
from tests.conftest import BACKEND_STORAGE
from tests.support.api import bearer, error_code, sign_up, update, uploaded
from tests.support.live import call, live_user, multipart

EVERY_STORAGE = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])


def image(fmt: str, size: tuple[int, int] = (800, 600), mode: str = "RGB", color="navy", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, **options)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header (and a little data) that declares width × height pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + chunk(b"IEND", b""))


def listed(client, headers, query: str) -> dict:
    response = client.get(f"/file/list?{query}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["data"]


def names(page: dict) -> list[str]:
    return [item["name"] for item in page["items"]]


def derived(app) -> list:
    return list(app.extensions["storage"].derived())


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.json
    assert response.headers["Content-Type"] == "image/webp"
    shown = Image.open(io.BytesIO(response.data))
    assert shown.format == "WEBP"
    return shown


# -- search, filter, sort ----------------------------------------------------------------------------


def test_q_matches_inside_names_in_any_case_and_takes_percent_and_underscore_literally(client, signed_in):
    for name in ("Report 2026.txt", "a%b.txt", "axb.txt", "a_b.txt", "aXXb.txt", "Отчёт.txt", "notes.txt"):
        uploaded(client, signed_in, name.encode(), name)
    assert names(listed(client, signed_in, "q=%25")) == ["a%b.txt"]
    assert names(listed(client, signed_in, "q=_")) == ["a_b.txt"]
    assert names(listed(client, signed_in, "q=a_b")) == ["a_b.txt"]
    assert names(listed(client, signed_in, "q=rEPORT")) == ["Report 2026.txt"]
    assert names(listed(client, signed_in, "q=ОТЧЁ")) == ["Отчёт.txt"]  # not only ASCII letters fold
    page = listed(client, signed_in, "q=.TXT&list_size=3&page=2")
    assert (page["total"], page["pages"], len(page["items"])) == (7, 3, 3)
    assert listed(client, signed_in, "q=nothing like it") == {"items": [], "page": 1, "list_size": 10, "total": 0,
                                                              "pages": 0}
    plain = listed(client, signed_in, "q=&type=&sort=")  # empty parameters: the plain list
    assert (plain["total"], names(plain)[0]) == (7, "notes.txt")


def test_type_takes_a_mime_type_or_a_family(client, signed_in):
    uploaded(client, signed_in, image("PNG"), "a.png")
    uploaded(client, signed_in, image("JPEG"), "b.jpg")
    uploaded(client, signed_in, b"words\n", "c.txt")
    uploaded(client, signed_in, b"%PDF-1.4\n%\xe2\xe3\n", "d.pdf")
    assert names(listed(client, signed_in, "type=image/")) == ["b.jpg", "a.png"]
    assert names(listed(client, signed_in, "type=IMAGE/*")) == ["b.jpg", "a.png"]
    assert names(listed(client, signed_in, "type=image/png")) == ["a.png"]
    assert names(listed(client, signed_in, "type=text/plain&q=c")) == ["c.txt"]
    assert names(listed(client, signed_in, "type=image/p")) == []  # a type is matched whole, not as a prefix
    page = listed(client, signed_in, "type=image/&list_size=1")
    assert (page["total"], page["pages"]) == (2, 2)


@pytest.mark.parametrize("near_skip", [100, 0], ids=["plain-read", "deferred-join"])
def test_every_sort_pages_through_every_file_once_ties_broken_by_id(client, signed_in, monkeypatch, near_skip):
    monkeypatch.setattr(file_service, "NEAR_SKIP", near_skip)
    made = []
    for name, size in [("b", 3), ("a", 1), ("b", 3), ("c", 2), ("a", 3), ("b", 1), ("c", 2)]:
        made.append(uploaded(client, signed_in, b"some words\n" * size, name))
    column = {"uploaded_at": lambda f: f["id"], "name": lambda f: f["name"], "size": lambda f: f["size"]}
    for sort in file_service.SORTS:
        key = column[sort.lstrip("-")]
        expected = sorted(made, key=lambda f: (key(f), f["id"]), reverse=sort.startswith("-"))
        for list_size in (1, 2, 3):
            pages = -(-len(made) // list_size)
            seen = []
            for page in range(1, pages + 1):  # past the middle, pages are read from the other end of the index
                seen += [item["id"] for item in listed(client, signed_in, f"sort={sort}&page={page}&list_size={list_size}")["items"]]
            assert seen == [f["id"] for f in expected], (sort, list_size)
        for where in ("type=text/", "type=text/plain"):  # the filtered read orders the same way
            found = listed(client, signed_in, f"sort={sort}&list_size=100&{where}")
            assert [item["id"] for item in found["items"]] == [f["id"] for f in expected]
    assert names(listed(client, signed_in, "")) == [f["name"] for f in reversed(made)][:10]  # default: newest first


@pytest.mark.parametrize(("query", "field"), [
    ("sort=bogus", "sort"), ("sort=%2Bname", "sort"), ("sort=--name", "sort"), ("sort=mime_type", "sort"),
    ("type=image", "type"), ("type=/png", "type"), ("type=image/png;q=1", "type"), ("type=*/*", "type"),
    ("type=%20image/", "type"), (f"q={'x' * 256}", "q"),
])
def test_a_bad_q_type_or_sort_is_400_on_that_field(client, signed_in, query, field):
    response = client.get(f"/file/list?{query}", headers=signed_in)
    assert response.status_code == 400
    assert error_code(response) == "validation_error" and set(response.json["error"]["details"]["fields"]) == {field}


def test_the_search_never_shows_another_users_files(client, signed_in):
    uploaded(client, signed_in, b"mine", "shared name.txt")
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    uploaded(client, bob, b"his", "shared name.txt")
    page = listed(client, bob, "q=shared")
    assert page["total"] == 1 and page["items"][0]["size"] == 3


# -- thumbnails -------------------------------------------------------------------------------------------


@EVERY_STORAGE
@pytest.mark.parametrize(("fmt", "mode", "dimensions", "options"), [
    ("JPEG", "RGB", (1600, 1200), {}),
    ("PNG", "RGBA", (300, 1200), {}),
    ("WEBP", "RGB", (100, 50), {}),  # smaller than every square: never enlarged
    ("PNG", "P", (640, 480), {}),
])
def test_a_thumbnail_fits_the_square_for_each_format(app, client, signed_in, fmt, mode, dimensions, options):
    record = uploaded(client, signed_in, image(fmt, dimensions, mode, **options), f"picture.{fmt.lower()}")
    width, height = dimensions
    for size in thumbnails.SIZES:
        shown = picture(client.get(f"/file/{record['id']}/thumbnail?size={size}", headers=signed_in))
        scale = min(1.0, size / max(width, height))
        assert shown.size == (max(1, round(width * scale)), max(1, round(height * scale))), size
    assert len(derived(app)) == len(thumbnails.SIZES)
    assert client.get("/user/usage", headers=signed_in).json["data"]["bytes"] == record["size"]  # in no quota


def test_a_gif_gives_its_first_frame_and_exif_turns_a_photo_upright(client, signed_in):
    frames = [Image.new("RGB", (200, 100), color) for color in ("red", "lime")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    gif = uploaded(client, signed_in, out.getvalue(), "blink.gif")
    shown = picture(client.get(f"/file/{gif['id']}/thumbnail?size=64", headers=signed_in)).convert("RGB")
    red, green, _ = shown.getpixel((32, 16))
    assert shown.size == (64, 32) and red > 200 and green < 60

    photo = Image.new("RGB", (400, 200), "white")
    exif = photo.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    out = io.BytesIO()
    photo.save(out, "JPEG", exif=exif.tobytes())
    turned = uploaded(client, signed_in, out.getvalue(), "phone.jpg")
    assert picture(client.get(f"/file/{turned['id']}/thumbnail?size=64", headers=signed_in)).size == (32, 64)


@EVERY_STORAGE
def test_made_once_per_version_then_served_from_storage_with_etag_and_304(app, client, signed_in, monkeypatch):
    made = []
    real_render = thumbnails.render
    monkeypatch.setattr(thumbnails, "render", lambda *args: made.append(args[2]) or real_render(*args))
    record = uploaded(client, signed_in, image("PNG", (500, 500)), "square.png")
    first = client.get(f"/file/{record['id']}/thumbnail?size=256", headers=signed_in)
    again = client.get(f"/file/{record['id']}/thumbnail?size=256", headers=signed_in)
    assert made == [256] and first.data == again.data and first.headers["ETag"] == again.headers["ETag"]
    not_modified = client.get(f"/file/{record['id']}/thumbnail?size=256",
                              headers={**signed_in, "If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.data == b"" and made == [256]
    other_size = client.get(f"/file/{record['id']}/thumbnail?size=64",
                            headers={**signed_in, "If-None-Match": first.headers["ETag"]})
    assert other_size.status_code == 200 and made == [256, 64]
    default = client.get(f"/file/{record['id']}/thumbnail", headers=signed_in)
    assert default.headers["ETag"] == first.headers["ETag"]  # no size: 256

    assert update(client, signed_in, record["id"], image("PNG", (500, 250)), "square.png").status_code == 200
    assert len(derived(app)) == 0  # the old version's thumbnails went with its bytes
    replaced = client.get(f"/file/{record['id']}/thumbnail?size=256",
                          headers={**signed_in, "If-None-Match": first.headers["ETag"]})
    assert picture(replaced).size == (256, 128) and replaced.headers["ETag"] != first.headers["ETag"]
    assert len(derived(app)) == 1
    assert client.delete(f"/file/delete/{record['id']}", headers=signed_in).status_code == 200
    assert derived(app) == []


@EVERY_STORAGE
def test_not_an_image_is_415_a_bad_size_400_someone_elses_404(client, signed_in):
    text = uploaded(client, signed_in, b"just words\n", "notes.txt")
    svg = uploaded(client, signed_in, b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "x.svg")
    bmp = uploaded(client, signed_in, image("BMP", (20, 20)), "old.bmp")
    broken = uploaded(client, signed_in, image("PNG", (300, 300))[:200], "cut.png")
    for record in (text, svg, bmp, broken):
        response = client.get(f"/file/{record['id']}/thumbnail?size=64", headers=signed_in)
        assert response.status_code == 415 and error_code(response) == "unsupported_media_type", record
    png = uploaded(client, signed_in, image("PNG", (30, 30)), "ok.png")
    for size in ("65", "0", "-64", "abc", "64.0", "2048"):
        response = client.get(f"/file/{png['id']}/thumbnail?size={size}", headers=signed_in)
        assert response.status_code == 400 and set(response.json["error"]["details"]["fields"]) == {"size"}
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    assert client.get(f"/file/{png['id']}/thumbnail", headers=bob).status_code == 404
    assert client.get(f"/file/{png['id']}/thumbnail").status_code == 401


@EVERY_STORAGE
def test_a_decompression_bomb_is_415_from_its_header_alone(client, signed_in, monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or None)
    bomb = uploaded(client, signed_in, png_declaring(100_000, 100_000), "bomb.png")
    assert bomb["mime_type"] == "image/png" and bomb["size"] < 200
    started = time.monotonic()
    response = client.get(f"/file/{bomb['id']}/thumbnail?size=64", headers=signed_in)
    assert response.status_code == 415 and "100000×100000" in response.json["error"]["message"]
    assert decoded == [] and time.monotonic() - started < 2


def test_the_pixel_limit_is_a_setting(make_app):
    app = make_app(THUMBNAIL_MAX_PIXELS="10000")
    client = app.test_client()
    headers = bearer(sign_up(client)["access_token"])
    small = uploaded(client, headers, image("PNG", (100, 100)), "small.png")
    large = uploaded(client, headers, image("PNG", (101, 100)), "large.png")
    assert client.get(f"/file/{small['id']}/thumbnail", headers=headers).status_code == 200
    assert client.get(f"/file/{large['id']}/thumbnail", headers=headers).status_code == 415


def make_link(client, headers, file_id: int, **body) -> str:
    response = client.post(f"/file/{file_id}/link", headers=headers, json=body)
    assert response.status_code == 201, response.json
    return response.json["data"]["path"]


@EVERY_STORAGE
def test_an_inline_link_serves_thumbnails(client, signed_in):
    record = uploaded(client, signed_in, image("JPEG", (1000, 500)), "wide.jpg")
    inline = make_link(client, signed_in, record["id"], disposition="inline")
    shown = client.get(f"{inline}?thumbnail=256")
    assert picture(shown).size == (256, 128)
    assert shown.headers["Content-Security-Policy"] == "sandbox" and shown.headers["Referrer-Policy"] == "no-referrer"
    assert client.get(f"{inline}?thumbnail=256", headers={"If-None-Match": shown.headers["ETag"]}).status_code == 304
    mine = client.get(f"/file/{record['id']}/thumbnail?size=256", headers=signed_in)
    assert mine.headers["ETag"] == shown.headers["ETag"] and mine.data == shown.data
    for answer in (shown, mine):  # a download's headers, of the thumbnail's own bytes
        assert answer.headers["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(answer.data).digest()).decode() + ":"
        assert answer.headers["Accept-Ranges"] == "bytes" and answer.headers["Last-Modified"]
    part = client.get(f"{inline}?thumbnail=256", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == shown.data[:10]
    assert client.get(f"{inline}?thumbnail=256", headers={"Range": ""}).data == shown.data  # empty: the whole
    assert client.get(f"{inline}?thumbnail=256", headers={"Range": "bytes=999999-"}).status_code == 416
    whole = client.get(inline)  # without the parameter, the file itself
    assert whole.headers["Content-Type"] == "image/jpeg" and len(whole.data) == record["size"]
    assert client.get(f"{inline}?thumbnail=100").status_code == 400

    attachment = make_link(client, signed_in, record["id"])
    refused = client.get(f"{attachment}?thumbnail=64")
    assert refused.status_code == 400 and set(refused.json["error"]["details"]["fields"]) == {"thumbnail"}
    text = uploaded(client, signed_in, b"plain words\n", "notes.txt")
    text_link = make_link(client, signed_in, text["id"], disposition="inline")
    assert client.get(f"{text_link}?thumbnail=64").status_code == 415

    assert update(client, signed_in, record["id"], image("JPEG", (10, 10)), "wide.jpg").status_code == 200
    assert client.get(f"{inline}?thumbnail=256").status_code == 404  # replaced: the link is dead, thumbnails too
    assert client.get("/file/link/not-a-token?thumbnail=64").status_code == 404


@EVERY_STORAGE
def test_deleting_the_account_removes_its_thumbnails(app, client, signed_in):
    with app.extensions["engine"].begin() as connection:
        connection.execute(sa.text("UPDATE users SET is_superuser = :yes WHERE login = 'ann@example.com'"), {"yes": True})
    bob = bearer(sign_up(client, "bob@example.com")["access_token"])
    record = uploaded(client, bob, image("PNG", (90, 90)), "bob.png")
    assert client.get(f"/file/{record['id']}/thumbnail?size=64", headers=bob).status_code == 200
    assert len(derived(app)) == 1
    assert client.delete("/admin/users/bob@example.com", headers=signed_in).status_code == 200
    assert derived(app) == []


@EVERY_STORAGE
def test_storage_check_removes_thumbnails_whose_file_is_gone(app, client, signed_in):
    kept = uploaded(client, signed_in, image("PNG", (90, 90)), "kept.png")
    lost = uploaded(client, signed_in, image("PNG", (80, 80)), "lost.png")
    for record in (kept, lost):
        assert client.get(f"/file/{record['id']}/thumbnail?size=64", headers=signed_in).status_code == 200
    storage = app.extensions["storage"]
    with app.extensions["engine"].begin() as connection:  # the row goes, its bytes stay: a crash's leftovers
        key = connection.execute(sa.text("SELECT storage_key FROM files WHERE id = :i"), {"i": lost["id"]}).scalar()
        connection.execute(sa.text("DELETE FROM files WHERE id = :i"), {"i": lost["id"]})
    storage.delete(key)  # only its thumbnail is left behind
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage-check", "--min-age", "0"])
    assert result.exit_code == 1 and f"orphan: thumb1-64.webp of blob {key}" in result.output
    assert "checked thumbnails: 1 found whose bytes no file row points at" in result.output
    result = runner.invoke(args=["storage-check", "--min-age", "0", "--repair"])
    assert "checked thumbnails: 1 removed whose bytes" in result.output
    assert [item.key for item in derived(app)] != [] and key not in [item.key for item in derived(app)]
    result = runner.invoke(args=["storage-check", "--min-age", "0"])
    assert result.exit_code == 0 and "checked thumbnails: 0 found" in result.output
    assert client.get(f"/file/{kept['id']}/thumbnail?size=64", headers=signed_in).status_code == 200


# -- off the event loop ------------------------------------------------------------------------------


def test_large_thumbnails_do_not_stall_other_requests(make_live_server, tmp_path):
    """One gevent worker: /info answers at once while it makes three thumbnails of a 16-megapixel PNG."""
    server = make_live_server(WEB_CONCURRENCY="1")
    user = live_user(server)
    big = io.BytesIO()
    Image.linear_gradient("L").resize((4000, 4000)).convert("RGB").save(big, "PNG", compress_level=1)
    head, tail, content_type = multipart(big.getvalue(), "big.png")
    status, _, body = call(server, "POST", "/file/upload", {**user, "Content-Type": content_type}, head + tail)
    assert status == 201, body
    file_id = json.loads(body)["data"]["id"]

    finished: list[float] = []

    def make(size: int) -> None:
        started = time.monotonic()
        status, headers, _ = call(server, "GET", f"/file/{file_id}/thumbnail?size={size}", user)
        assert status == 200 and headers["Content-Type"] == "image/webp"
        finished.append(time.monotonic() - started)

    workers = [threading.Thread(target=make, args=(size,)) for size in thumbnails.SIZES]
    for worker in workers:
        worker.start()
    waits = []
    time.sleep(0.1)
    while any(worker.is_alive() for worker in workers):
        started = time.monotonic()
        status, _, _ = call(server, "GET", "/info", user)
        assert status == 200
        waits.append(time.monotonic() - started)
        time.sleep(0.02)
    for worker in workers:
        worker.join()
    assert len(finished) == 3 and max(finished) > 0.3, finished  # long enough for a stall to show
    waits.sort()
    # Decoded in the event loop, /info would wait for a whole decode: as long as the thumbnails themselves.
    assert len(waits) >= 5 and waits[len(waits) // 2] < 0.1 and waits[-1] < max(finished) / 2, (waits, finished)
