"""Resumable (tus 1.0.0) uploads: create, append chunks, become a file, terminate, expire.

The upload's state between requests is its row (`received` of `length`, the storage reference);
its bytes are in storage, so any instance can take the next chunk. A chunk is written under a claim
on the row (one conditional UPDATE), so two requests never write to one upload at the same time;
the new offset is committed only after the bytes are durable. The request that writes the last
byte makes the file: bytes first, then the file row, the owner's counters and the upload in one
transaction.
"""
import base64
import binascii
import hashlib
import logging
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from app import threads
from app.db.models import File, Upload
from app.errors import (
    ChecksumMismatch, Conflict, FileTooLarge, NotFound, QuotaExceeded, RateLimited, ServiceUnavailable, ValidationError
)
from app.services import quota
from app.services.files import (
    SNIFF_BYTES, commit_pointing_at, detect_mime, discard, display_name, extension_of, room_for, rows_for_stored
)
from app.storage import CHUNK, ByteStream, Storage
from app.storage.base import PartialInfo

log = logging.getLogger("app.uploads")

CHECKSUMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
CLAIM_RENEW = 1.0  # seconds between refreshes of a writer's claim while its request lives
# A claim not refreshed this long is a dead writer's (a crashed worker): another request may take it, so a
# client resumes within seconds of a crash instead of meeting 409 until a long lease runs out.
CLAIM_STALE = timedelta(seconds=4)
# While a long chunk streams in, what arrived is made durable and counted every so often: a crash loses at
# most this much of it, not the whole chunk.
CHECKPOINT_BYTES = 16 << 20
CHECKPOINT_SECONDS = 5.0
ID_BYTES = 16  # 128 random bits, as 32 hex characters


# -- headers ---------------------------------------------------------------------------------------------


def parse_metadata(header: str) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` (or a bare `key`); values must decode as UTF-8."""
    found: dict[str, str] = {}
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        value = value.strip()
        if not key or not key.isascii() or " " in value or key in found:
            raise ValidationError.field("Upload-Metadata", f"not a list of unique `key base64` pairs: {key!r}")
        try:
            found[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValidationError.field("Upload-Metadata", f"the value of {key!r} is not base64 of UTF-8 text") from None
    return found


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_checksum(header: str) -> Checksum:
    """`Upload-Checksum: <sha1|sha256> <base64 digest>`."""
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise ValidationError.field("Upload-Checksum", f"unsupported algorithm {algorithm!r}: use sha1 or sha256")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise ValidationError.field("Upload-Checksum", f"not the base64 of a {algorithm} digest")
    return Checksum(algorithm, digest)


# -- creating and reading --------------------------------------------------------------------------------


def create_upload(
    db: Session, storage: Storage, *, owner_id: int, length: int, client_name: str, max_bytes: int,
    default_quota: int, expiry: int, now: datetime, max_files: int = 0, max_open: int = 0,
) -> Upload:
    """A new upload of `length` bytes, reserved against the owner's quota. A 0-byte upload is a file at once.

    The owner's expired uploads go first (their reservations with them); over `max_open` unfinished
    uploads is 429 until the oldest expires, at `max_files` files 413."""
    if length > max_bytes:
        raise FileTooLarge.over(max_bytes)
    free_expired(db, storage, owner_id=owner_id, now=now)
    upload = Upload(
        id=secrets.token_hex(ID_BYTES), owner_id=owner_id, length=length, received=0,
        name=display_name(client_name), created_at=now, expires_at=now + timedelta(seconds=expiry),
    )
    if length == 0:
        return _empty_file(db, storage, upload, now, max_files)
    _check_caps(db, owner_id=owner_id, now=now, max_files=max_files, max_open=max_open, default_quota=default_quota)
    # A refusal should cost the store nothing; the reservation below is the check that holds under races.
    standing = quota.room(db, owner_id=owner_id, default_quota=default_quota)
    db.commit()
    if not standing.fits(length):
        raise standing.refusal()
    upload.storage_ref = storage.start_partial()
    with rows_for_stored(db, lambda: _drop(storage, upload.storage_ref)):
        quota.reserve(db, owner_id=owner_id, amount=length, default_quota=default_quota)
        db.add(upload)
        db.commit()
    return upload


def _check_caps(db: Session, *, owner_id: int, now: datetime, max_files: int, max_open: int, default_quota: int) -> None:
    if max_open > 0:
        open_uploads = db.execute(
            select(func.count(), func.min(Upload.expires_at))
            .where(Upload.owner_id == owner_id, Upload.received < Upload.length, Upload.expires_at > now)
        ).one()
        if open_uploads[0] >= max_open:
            db.commit()
            wait = (open_uploads[1] - now).total_seconds()
            raise RateLimited.after(time.time() + wait, f"you have {max_open} unfinished resumable uploads, the most "
                                    "one account may keep open; finish or terminate one first", limit="open-uploads")
    if max_files > 0 and quota.usage(db, owner_id=owner_id, default_quota=default_quota).files >= max_files:
        db.commit()
        raise QuotaExceeded.files(max_files)


def count_open(db: Session, *, now: datetime) -> int:
    """Resumable uploads begun and neither complete nor expired, of every user."""
    count = db.scalar(select(func.count()).select_from(Upload)
                      .where(Upload.received < Upload.length, Upload.expires_at > now))
    db.commit()
    return int(count or 0)


def free_expired(db: Session, storage: Storage, *, owner_id: int, now: datetime) -> int:
    """Remove the owner's unfinished uploads past their expiry, with their bytes and reservations: an expired
    upload holds no quota, without an operator's help. How many went."""
    expired = [Found.of(upload) for upload in db.scalars(
        select(Upload).where(Upload.owner_id == owner_id, Upload.expires_at <= now, Upload.received < Upload.length)
    )]
    db.commit()
    removed = 0
    for found in expired:
        if _remove(db, found, now=now):
            _drop(storage, found.storage_ref)
            removed += 1
    return removed


def room_for_upload(
    db: Session, storage: Storage, *, owner_id: int, standing: quota.Room, at_least: int, file_id: int | None,
    now: datetime,
) -> quota.Room:
    """The owner's room for a plain upload (a new file, or new content of `file_id`), before its body streams
    in: 413 now if a body of `at_least` bytes cannot fit. `standing` is what the bearer check read; room held
    by resumable uploads that have expired is given back first, and the room read again."""
    if standing.reserved and free_expired(db, storage, owner_id=owner_id, now=now):
        fresh = quota.room(db, owner_id=owner_id, default_quota=standing.default_quota)
        standing = replace(fresh, max_files=standing.max_files)
    return room_for(db, owner_id=owner_id, room=standing, at_least=at_least, file_id=file_id)


def _empty_file(db: Session, storage: Storage, upload: Upload, now: datetime, max_files: int = 0) -> Upload:
    blob = storage.save(EmptyStream())
    upload.storage_ref = ""
    with rows_for_stored(db, lambda: discard(storage, blob.key)):
        record = _file_row(upload, blob.key, blob.sha256, b"", now)
        quota.charge(db, owner_id=upload.owner_id, growth=0, files=1, default_quota=0, max_files=max_files)
        db.add(record)
        db.flush()
        upload.file_id = record.id
        db.add(upload)
        commit_pointing_at(db, blob.key)
    return upload


class EmptyStream:
    def read(self, size: int = -1, /) -> bytes:
        return b""


def get_own_upload(db: Session, *, owner_id: int, upload_id: str, now: datetime) -> Upload:
    upload = db.scalar(select(Upload).where(Upload.id == upload_id, Upload.owner_id == owner_id))
    if upload is None or upload.expires_at <= now:
        raise NotFound("upload not found")  # the same answer for "missing", "expired" and "not yours"
    return upload


def file_of(db: Session, upload: Upload) -> File | None:
    return db.get(File, upload.file_id) if upload.file_id is not None else None


# -- appending -------------------------------------------------------------------------------------------


@dataclass
class Appended:
    upload: Upload
    file: File | None  # the file the upload became, if this chunk completed it


def append_chunk(
    db: Session, storage: Storage, *, owner_id: int, upload_id: str, offset: int, stream: ByteStream,
    announced: int | None, checksum: Checksum | None, expiry: int, now: datetime,
) -> Appended:
    """Write one chunk at `offset` (which must be the upload's current offset) and commit the new offset.

    `announced` is the chunk's Content-Length, if sent: a chunk that would pass the upload's length is
    refused before it is read. A stream that ends early (a dropped connection) keeps what arrived, unless
    a checksum was sent for it.
    """
    upload = get_own_upload(db, owner_id=owner_id, upload_id=upload_id, now=now)
    if upload.complete:
        raise Conflict("the upload is already complete", {"offset": upload.received})
    if offset != upload.received:
        raise Conflict(f"Upload-Offset must be the current offset, {upload.received}", {"offset": upload.received})
    room = upload.length - offset
    if announced is not None and announced > room:
        raise ValidationError.field("Content-Length", f"the chunk would pass Upload-Length: {room} bytes remain")
    claim = Claim.take(db, upload, now)
    try:
        capped = Capped(stream, room, claim)
        if checksum is None and announced is not None:
            size = _write_in_steps(storage, upload, capped, claim)
        else:  # checked whole, or of unknown length (what passes Upload-Length must leave nothing kept)
            size = _write(storage, upload, capped, checksum)
        expires_at = now + timedelta(seconds=expiry)
        if size == upload.length:
            return Appended(upload, _complete(db, storage, upload, claim, now, expires_at))
        claim.release(received=size, expires_at=expires_at)
    except FileNotFoundError:
        # Its bytes were lost (a volume replaced, a bucket emptied): nothing can resume it, so it goes.
        log.error("upload %s: its stored bytes are gone; removing it", upload.id)
        claim.abandon()
        found = Found.of(upload)
        if _remove(db, found, now=now):
            _drop(storage, found.storage_ref)
        raise NotFound("the upload's stored bytes are gone; start a new upload") from None
    except BaseException:
        claim.abandon()
        raise
    db.refresh(upload)
    return Appended(upload, None)


def _write_in_steps(storage: Storage, upload: Upload, stream: "Capped", claim: "Claim") -> int:
    """Append the chunk in steps, each made durable and its new offset committed before the next: a crash
    mid-chunk keeps every step before it, and the client resumes from there."""
    received = upload.received
    while True:
        step = Step(stream)
        received = storage.append_partial(upload.storage_ref, received, step)
        if step.ended:
            return received
        claim.checkpoint(received)


class Step:
    """Part of a chunk: at most CHECKPOINT_BYTES, or what arrives within CHECKPOINT_SECONDS."""

    def __init__(self, stream: ByteStream):
        self.stream, self.read_bytes, self.started, self.ended = stream, 0, time.monotonic(), False

    def read(self, size: int = -1, /) -> bytes:
        if self.read_bytes >= CHECKPOINT_BYTES or time.monotonic() - self.started >= CHECKPOINT_SECONDS:
            return b""  # this step ends here; the chunk goes on in the next
        want = CHUNK if size is None or size < 0 else size
        chunk = self.stream.read(min(want, CHECKPOINT_BYTES - self.read_bytes))
        self.ended = not chunk
        self.read_bytes += len(chunk)
        return chunk


def _write(storage: Storage, upload: Upload, stream: "Capped", checksum: Checksum | None) -> int:
    if checksum is None:
        return storage.append_partial(upload.storage_ref, upload.received, stream)
    # The chunk is checked whole before any of it is kept: spooled to a temporary file, never held in memory.
    digest = CHECKSUMS[checksum.algorithm]()
    with tempfile.TemporaryFile() as spool:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            spool.write(chunk)
        if digest.digest() != checksum.digest:
            raise ChecksumMismatch(f"the chunk's {checksum.algorithm} does not match Upload-Checksum")
        spool.seek(0)
        return storage.append_partial(upload.storage_ref, upload.received, spool)


class Capped:
    """The chunk as storage reads it: refused (400) past the upload's length; keeps the writer's claim fresh."""

    def __init__(self, stream: ByteStream, room: int, claim: "Claim"):
        self.stream, self.room, self.claim = stream, room, claim
        self.read_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        # One byte more than fits, so a chunk that is too long is seen as such, never silently cut.
        chunk = self.stream.read(min(want, self.room - self.read_bytes + 1))
        self.read_bytes += len(chunk)
        if self.read_bytes > self.room:
            raise ValidationError.field("body", f"the chunk passes Upload-Length: only {self.room} bytes remain")
        self.claim.check()
        return chunk


@dataclass
class Claim:
    """This request's exclusive right to write to one upload, held in the upload's row."""

    db: Session
    upload_id: str
    token: str
    taken_at: datetime
    started: float = field(default_factory=time.monotonic)
    lost: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    renewer: threading.Thread | None = None

    @classmethod
    def take(cls, db: Session, upload: Upload, now: datetime) -> "Claim":
        token = secrets.token_hex(ID_BYTES)
        taken = db.execute(
            update(Upload)
            .where(Upload.id == upload.id, Upload.received == upload.received, Upload.expires_at > now,
                   or_(Upload.claim.is_(None), Upload.claimed_at < now - CLAIM_STALE))
            .values(claim=token, claimed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.commit()  # visible to every other writer at once; no transaction is held while the bytes stream in
        if taken != 1:
            raise Conflict("another request is writing to this upload, or it moved on; HEAD it and resume")
        claim = cls(db, upload.id, token, now)
        # Kept fresh while this request lives, however slowly its bytes come: in a greenlet of the server's
        # event loop (threading is gevent's there), on its own connection.
        claim.renewer = threading.Thread(target=claim._keep_fresh, args=(db.get_bind(),), daemon=True)
        claim.renewer.start()
        return claim

    def _now(self) -> datetime:
        return self.taken_at + timedelta(seconds=time.monotonic() - self.started)

    def _keep_fresh(self, engine: Any) -> None:
        while not self.stop.wait(CLAIM_RENEW):
            try:
                with engine.begin() as connection:
                    kept = connection.execute(
                        update(Upload).where(Upload.id == self.upload_id, Upload.claim == self.token)
                        .values(claimed_at=self._now())
                    ).rowcount
            except Exception:  # the database is unreachable: another writer may take over once it is back
                log.warning("could not refresh the claim on upload %s", self.upload_id)
                kept = 0
            if kept != 1:
                self.lost = True
                return

    def check(self) -> None:
        """Conflict once the claim is lost: no byte more may be written, another writer may have started."""
        if self.lost:
            raise Conflict("this request lost its claim on the upload; HEAD it and resume")

    def _stop(self) -> None:
        # Not joined: the caller may hold SQLite's write turn (app.db.engines.OneWriter) that the renewer waits for.
        # A refresh still under way finds the claim released and changes nothing.
        self.stop.set()

    def checkpoint(self, received: int) -> None:
        """Commit the offset of bytes already durable, keeping the claim."""
        self.check()
        kept = self._mine(received=received, claimed_at=self._now())
        if kept != 1:
            self.db.rollback()
            self.lost = True
            raise Conflict("this request lost its claim on the upload; HEAD it and resume")
        self.db.commit()

    def _mine(self, **values: Any) -> int:
        return self.db.execute(
            update(Upload).where(Upload.id == self.upload_id, Upload.claim == self.token).values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount

    def release(self, file_key: str | None = None, **values: Any) -> None:
        """Commit the new state and let go; Conflict if another writer took the claim meanwhile. With
        `file_key`, the transaction makes a file row point at those bytes (see commit_pointing_at)."""
        self._stop()
        kept = self._mine(claim=None, claimed_at=None, **values)
        if kept != 1:
            self.db.rollback()
            raise Conflict("this request lost its claim on the upload (it stalled too long)")
        if file_key is None:
            self.db.commit()
        else:
            commit_pointing_at(self.db, file_key)

    def abandon(self) -> None:
        self._stop()
        try:
            self.db.rollback()
            self._mine(claim=None, claimed_at=None)
            self.db.commit()
        except Exception:  # the database is what failed: the claim goes stale on its own
            self.db.rollback()
            log.warning("could not release the claim on upload %s", self.upload_id)


def _complete(
    db: Session, storage: Storage, upload: Upload, claim: Claim, now: datetime, expires_at: datetime,
) -> File:
    """Bytes first (the partial upload becomes a blob), then the file row, counters and upload in one commit."""
    key = storage.finish_partial(upload.storage_ref, upload.length)
    with rows_for_stored(db, lambda: discard(storage, key)):
        sha256, head = _digest(storage, key)
        record = _file_row(upload, key, sha256, head, now)
        quota.settle(db, owner_id=upload.owner_id, amount=upload.length)
        db.add(record)
        db.flush()
        claim.release(key, received=upload.length, file_id=record.id, expires_at=expires_at)
    _drop(storage, upload.storage_ref)
    db.refresh(upload)
    return record


def _digest(storage: Storage, key: str) -> tuple[str, bytes]:
    """The SHA-256 of the whole content, read back once: a hash's state cannot travel between instances."""
    digest, head = hashlib.sha256(), b""
    with storage.open(key) as stream:
        while chunk := stream.read(CHUNK):
            threads.blocking(digest.update, chunk)  # a core's work: beside the event loop
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
    return digest.hexdigest(), head


def _file_row(upload: Upload, key: str, sha256: str, head: bytes, now: datetime) -> File:
    return File(
        owner_id=upload.owner_id, name=upload.name, extension=extension_of(upload.name),
        mime_type=detect_mime(head, upload.name), size=upload.length, sha256=sha256, storage_key=key,
        uploaded_at=now, updated_at=now,
    )


# -- ending ----------------------------------------------------------------------------------------------


def terminate_upload(db: Session, storage: Storage, *, owner_id: int, upload_id: str, now: datetime) -> None:
    """Forget the upload: an unfinished one's bytes go and its reservation is released; a file it became stays."""
    found = Found.of(get_own_upload(db, owner_id=owner_id, upload_id=upload_id, now=now))
    if not _remove(db, found, now=now):
        raise Conflict("a chunk is being written to this upload; retry when it is done")
    _drop(storage, found.storage_ref)


@dataclass(frozen=True)
class Found:
    """An upload's row as plain values, safe to use after the transaction that read it."""

    id: str
    owner_id: int
    length: int
    received: int
    storage_ref: str

    @classmethod
    def of(cls, upload: Upload) -> "Found":
        return cls(upload.id, upload.owner_id, upload.length, upload.received, upload.storage_ref)

    @property
    def complete(self) -> bool:
        return self.received == self.length


def _remove(db: Session, upload: Found, *, now: datetime) -> bool:
    """Delete the row (unless a live writer holds it) and release its reservation, in one transaction."""
    if not upload.complete:
        quota.release(db, owner_id=upload.owner_id, amount=upload.length)
    deleted = db.execute(
        delete(Upload)
        .where(Upload.id == upload.id, Upload.received == upload.received,
               or_(Upload.claim.is_(None), Upload.claimed_at < now - CLAIM_STALE))
        .execution_options(synchronize_session=False)
    ).rowcount
    if deleted != 1:
        db.rollback()
        return False
    db.commit()
    return True


def _drop(storage: Storage, ref: str) -> None:
    if not ref:
        return
    try:
        storage.drop_partial(ref)
    except (OSError, ServiceUnavailable):
        log.exception("could not remove partial upload %s; storage-check --repair will", ref)


# -- consistency check -----------------------------------------------------------------------------------


@dataclass
class UploadsReport:
    expired: list[Found] = field(default_factory=list)  # unfinished and past their expiry
    finished: int = 0  # completed uploads past their expiry: rows only, their files stay
    orphans: list[PartialInfo] = field(default_factory=list)  # partial uploads in storage that no live row owns


def check_uploads(db: Session, storage: Storage, *, now: datetime, min_age: float, repair: bool) -> UploadsReport:
    """Expired uploads and partial uploads nothing refers to; with `repair`, remove them (bytes, rows,
    reservations). Partial uploads younger than `min_age` s may be uploads whose row is being committed."""
    report = UploadsReport()
    for upload in db.scalars(select(Upload).where(Upload.expires_at <= now)):
        if upload.complete:
            report.finished += 1
        else:
            report.expired.append(Found.of(upload))
    db.commit()
    wall = time.time()
    candidates = [partial for partial in storage.partials() if wall - partial.modified >= min_age]
    # Read after the listing: a row committed while storage was listed owns its partial upload.
    unfinished = select(Upload.storage_ref).where(Upload.received < Upload.length)
    owned = {ref.partition(":")[0] for ref in db.scalars(unfinished)}
    db.commit()
    report.orphans = [partial for partial in candidates if partial.ref not in owned]
    if not repair:
        return report
    for upload in report.expired:
        if _remove(db, upload, now=now):
            _drop(storage, upload.storage_ref)
    db.execute(delete(Upload).where(Upload.expires_at <= now, Upload.received == Upload.length)
               .execution_options(synchronize_session=False))
    db.commit()
    for partial in report.orphans:
        storage.drop_partial(partial.ref)
    return report
