"""Thumbnails: a WebP of an image scaled to fit a square, made once per version of the file and size, kept in
storage beside the file's bytes (a derived blob of its storage key, counted in no quota) and removed with them.

Decoding is the one costly step, and it runs on a real thread at a lower priority (app.threads): Pillow's
decoders and resampling release the GIL, so the event loop goes on answering other requests meanwhile.
The image's size is read from its header before a pixel is decoded: a decompression bomb (a few KiB that
declare 100000×100000 pixels) is refused with 415 and never costs a worker its memory.
"""
import io
import logging
import os
import tempfile
import threading
from typing import Any, BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import threads
from app.db.models import File
from app.errors import ApiError, UnsupportedMediaType, ValidationError
from app.security import LinkSigner
from app.services.files import get_own_file
from app.services.links import linked_row, read_claims
from app.storage import Storage

log = logging.getLogger("app.files")

SIZES = (64, 256, 1024)
DEFAULT_SIZE = 256  # `size` left out or empty
# The stored type (sniffed from the content at upload) → the only Pillow decoder tried on it.
DECODERS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
# Part of the variant's name and of the ETag: a change to how thumbnails are made gives them new names,
# so no cache, ours or a client's, keeps serving the old rendering.
RENDERING = 1
WEBP_QUALITY = 80
# Decodes at once per process: each holds up to THUMBNAIL_MAX_PIXELS × 4 bytes while it runs.
RENDERS_AT_ONCE = 2
SPOOL_IN_MEMORY = 8 << 20  # an object store's stream is copied to a seekable file (Pillow seeks); on disk past this
# Pillow's own guard warns past 89 million pixels and refuses past twice that; THUMBNAIL_MAX_PIXELS, checked
# in `render` right after the header is read, is the one limit instead, so the setting alone decides.
Image.MAX_IMAGE_PIXELS = None


def require_image(mime_type: str) -> None:
    if mime_type not in DECODERS:
        raise UnsupportedMediaType(
            f"thumbnails are made of JPEG, PNG, GIF and WebP images; this file is {mime_type}")


def own_image(db: Session, *, owner_id: int, file_id: int) -> File:
    """The caller's file, if it is an image a thumbnail can be made of: 404, else 415."""
    record = get_own_file(db, owner_id=owner_id, file_id=file_id)
    db.commit()  # hold no snapshot while the image is decoded
    require_image(record.mime_type)
    return record


def linked_image(db: Session, signer: LinkSigner, *, token: str, now: Any) -> Any:
    """The file a live link names (404, 410 as the link's download), if the link was made to show it inline
    (else 400 on `thumbnail`) and it is an image (415)."""
    claims = read_claims(signer, token, now)
    row = linked_row(db, claims, now)
    if not claims.inline:
        raise ValidationError.field("thumbnail", "only a link made with disposition inline serves thumbnails")
    require_image(row.mime_type)
    return row


def thumbnail_etag(record: Any, size: int) -> str:
    """The same for as long as the content is (the SHA-256 names it), whichever instance made the thumbnail."""
    return f"t{RENDERING}-{size}-{record.sha256}"


def variant(size: int) -> str:
    return f"thumb{RENDERING}-{size}.webp"


def thumbnail(db: Session, storage: Storage, record: Any, *, size: int, max_pixels: int, gone: ApiError) -> bytes:
    """The thumbnail of `record`'s content: from storage if it was made before, else made and kept there.

    `gone` is raised if the content is replaced or deleted while this runs.
    """
    name = variant(size)
    try:
        with storage.open_derived(record.storage_key, name) as kept:
            return kept.read()
    except FileNotFoundError:
        pass
    try:
        source = storage.open(record.storage_key)
    except FileNotFoundError:
        raise gone from None
    with _seekable(source) as image_file, _renders():
        data = threads.blocking(render, image_file, DECODERS[record.mime_type], size, max_pixels)
    storage.save_derived(record.storage_key, name, data)
    # Replaced or deleted meanwhile: its derived blobs may have been removed before this one was stored.
    if db.scalar(select(File.id).where(File.storage_key == record.storage_key)) is None:
        storage.delete_derived(record.storage_key)
    db.commit()
    return data


def render(source: BinaryIO, decoder: str, size: int, max_pixels: int) -> bytes:
    """The WebP of the image's first frame, scaled to fit size×size (never enlarged), turned upright as its
    EXIF orientation says; 415 for a file that is not such an image, or one of more than `max_pixels` pixels."""
    try:
        with Image.open(source, formats=[decoder]) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width * height > max_pixels:
                raise UnsupportedMediaType(
                    f"the image has {width}×{height} pixels, more than the {max_pixels} a thumbnail is made of")
            image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that is still enough
            transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if transparent else "RGB")
            image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            image = ImageOps.exif_transpose(image)
            out = io.BytesIO()
            image.save(out, "WEBP", quality=WEBP_QUALITY)
            return out.getvalue()
    except UnsupportedMediaType:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnsupportedMediaType("the image declares more pixels than a thumbnail is made of") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        log.info("no thumbnail: %s image unreadable (%s)", decoder, e)
        raise UnsupportedMediaType("the file could not be read as an image") from None


class _seekable:
    """The stored bytes as a file Pillow can seek in: a local file as it is, an object store's stream copied
    (here, in the event loop, which does its network reads) to a temporary file."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def __enter__(self) -> BinaryIO:
        if getattr(self.stream, "seekable", lambda: False)():
            return self.stream
        copy = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)
        with self.stream:
            while chunk := self.stream.read(1 << 20):
                copy.write(chunk)
        copy.seek(0)
        self.stream = copy  # type: ignore[assignment]
        return copy  # type: ignore[return-value]

    def __exit__(self, *_: Any) -> None:
        self.stream.close()


_semaphore: tuple[int, Any] | None = None


def _renders() -> Any:
    """The process's limit on decodes at once; made after gevent patched `threading`, so waiting for it
    waits in the event loop, not on a thread lock."""
    global _semaphore
    if _semaphore is None or _semaphore[0] != os.getpid():
        _semaphore = (os.getpid(), threading.BoundedSemaphore(RENDERS_AT_ONCE))
    return _semaphore[1]

