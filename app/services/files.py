"""Private files: rows and stored bytes kept in step.

A row only ever points at bytes that are fully stored: bytes are written first and removed only
after the row that pointed at them is gone. A crash in between can leave an orphan blob (found by
the storage-check command), never a row without bytes.
"""
import logging
import mimetypes
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Callable, Iterator

import magic
from sqlalchemy import Integer, Select, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import OutcomeUnknown, commit_checked, folded
from app.db.models import File
from app.db.reads import Read
from app.errors import (
    Conflict, FileTooLarge, InvalidToken, NotFound, QuotaExceeded, ServiceUnavailable, ValidationError
)
from app.services import quota
from app.services.quota import Room
from app.storage import BlobInfo, ByteStream, DerivedInfo, Storage, StoredBlob

log = logging.getLogger("app.files")

NAME_MAX = 255
EXTENSION_MAX = 32
FALLBACK_NAME = "file"
SNIFF_BYTES = 8192  # zip-based office formats and tar headers are recognised within the first few KiB
RETRIES = 5
ABANDONED_AFTER = 2.0  # seconds: past the instant between a write's file being made and locked
IN_CHUNKS = 1000  # keys per IN (...) when re-checking
GENERIC_MIME = "application/octet-stream"
DRAIN_CHUNK = 1 << 20

_magic = magic.Magic(mime=True)  # one libmagic handle, loaded once; python-magic serialises calls on it
# Python's built-in table only (not the host's /etc/mime.types), so a name maps to the same type everywhere,
# plus common formats that table lacks.
_by_name = mimetypes.MimeTypes()
for _type, _extension in [
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    ("application/vnd.oasis.opendocument.text", ".odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", ".ods"),
    ("application/epub+zip", ".epub"),
    ("text/markdown", ".md"),
    ("application/yaml", ".yaml"),
    ("application/yaml", ".yml"),
    ("application/x-7z-compressed", ".7z"),
]:
    _by_name.add_type(_type, _extension)
UNRECOGNISED = {"application/octet-stream", "application/x-empty", "inode/x-empty"}
TEXT_TYPES = {"application/json", "application/xml", "application/javascript", "application/x-sh", "application/yaml",
              "image/svg+xml"}
ZIP_BASED = ("application/vnd.openxmlformats", "application/vnd.oasis.opendocument", "application/epub+zip")


# -- names and types ---------------------------------------------------------------------------


def display_name(client_name: str) -> str:
    """The client's file name without any directory part (either slash), control characters or excess length."""
    name = PureWindowsPath(client_name.replace("\x00", "")).name
    name = "".join(c for c in name if c.isprintable()).strip()
    if name in ("", ".", ".."):
        return FALLBACK_NAME
    if len(name) > NAME_MAX:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= EXTENSION_MAX + 1 else ""
        name = name[: NAME_MAX - len(suffix)] + suffix
    return name


def extension_of(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower().removeprefix(".")
    return suffix if len(suffix) <= EXTENSION_MAX else ""


def detect_mime(head: bytes, name: str) -> str:
    """From the content where libmagic recognises it, else from the name, else application/octet-stream."""
    sniffed = _magic.from_buffer(head) if head else "application/x-empty"
    guessed = _by_name.guess_type(name, strict=False)[0] or ""
    if sniffed in UNRECOGNISED:
        return guessed or GENERIC_MIME
    # Content sniffing only knows "some text" or "some zip"; the name may say which (a CSV, a DOCX).
    if sniffed == "text/plain" and (guessed.startswith("text/") or guessed in TEXT_TYPES):
        return guessed
    if sniffed == "application/zip" and guessed.startswith(ZIP_BASED):
        return guessed
    return sniffed


# -- reading -----------------------------------------------------------------------------------


def get_own_file(db: Session, *, owner_id: int, file_id: int) -> File:
    record = db.scalar(select(File).where(File.id == file_id, File.owner_id == owner_id))
    if record is None:
        raise NotFound("file not found")  # the same answer for "missing" and "not yours"
    return record


PAGE_COLUMNS = (File.id, File.name, File.extension, File.mime_type, File.size, File.sha256, File.uploaded_at,
                File.updated_at)
# `sort` → its column; each has an index (owner_id, column, id) read in either direction (app/db/models.py).
SORT_COLUMNS = {"uploaded_at": File.uploaded_at, "name": File.name, "size": File.size}
DEFAULT_SORT = "-uploaded_at"
SORTS = tuple(sign + column for column in SORT_COLUMNS for sign in ("-", ""))


def order_of(sort: str, reverse: bool = False) -> tuple:
    """ORDER BY for `sort` ("name", "-size", …): ties broken by id the same way, so paging is stable."""
    column = SORT_COLUMNS[sort.removeprefix("-")]
    if sort.startswith("-") != reverse:
        return column.desc(), File.id.desc()
    return column.asc(), File.id.asc()


def _page_query(order: tuple, final: tuple) -> Select:
    """Deferred join: skip entries on the (owner_id, column, id) index alone, then fetch whole rows."""
    page_ids = (
        select(File.id).where(File.owner_id == bindparam("owner_id")).order_by(*order)
        .limit(bindparam("limit", type_=Integer)).offset(bindparam("skip", type_=Integer)).subquery()
    )
    return select(*PAGE_COLUMNS).join(page_ids, File.id == page_ids.c.id).order_by(*final)


def _near_page_query(order: tuple) -> Select:
    """A plain range read of the same index: the cheaper statement while few entries are skipped."""
    return (select(*PAGE_COLUMNS).where(File.owner_id == bindparam("owner_id")).order_by(*order)
            .limit(bindparam("limit", type_=Integer)).offset(bindparam("skip", type_=Integer)))


# Up to this many skipped entries the plain read wins (MariaDB does about half the work for it; bench/README.md);
# past it, reading whole rows only to skip them costs more than the join.
NEAR_SKIP = 100
# Built once: composing these costs more than running them over a warm connection. Keyed by (sort, from the
# wanted end, near): the far pages are read with the deferred join.
def _page_read(sort: str, from_start: bool, near: bool) -> Read:
    order = order_of(sort, reverse=not from_start)
    return Read(_near_page_query(order) if near else _page_query(order, order_of(sort)))


PAGE_QUERIES = {
    (sort, from_start, near): _page_read(sort, from_start, near)
    for sort in SORTS for from_start in (True, False) for near in (True, False)
}


def list_files(
    db: Session, *, owner_id: int, total: int, page: int, list_size: int, sort: str = DEFAULT_SORT,
) -> list[Any]:
    """One page of the owner's files in `sort` order, as named tuples: one statement outside any transaction.

    `total` is the owner's counter (kept in the same transactions as the rows, not a count(*) scan);
    it only picks the cheaper end of the index to read from, and the cheaper statement.
    """
    offset = (page - 1) * list_size
    if offset >= total:
        return []
    limit = min(list_size, total - offset)
    # A page past the middle is read from the other end of the index, so no page skips more than half.
    from_start = offset <= total // 2
    skip = offset if from_start else total - offset - limit
    near = skip < NEAR_SKIP
    rows = PAGE_QUERIES[sort, from_start, near].all(db, {"owner_id": owner_id, "limit": limit, "skip": skip})
    return rows if from_start or not near else rows[::-1]  # the plain read from the other end comes reversed


@dataclass(frozen=True)
class FileFilter:
    """What `/file/list` narrows to: names containing `q` (any case), and a MIME type, or a family when it
    ends with "/" ("image/")."""

    q: str = ""
    mime_type: str = ""

    def __bool__(self) -> bool:
        return bool(self.q or self.mime_type)

    def shape(self) -> tuple[bool, str]:
        return bool(self.q), "" if not self.mime_type else "family" if self.mime_type.endswith("/") else "exact"

    def params(self) -> dict[str, str]:
        return {"pattern": "%" + like_escaped(self.q.lower()) + "%",
                "mime": like_escaped(self.mime_type) + "%" if self.mime_type.endswith("/") else self.mime_type}


LIKE_ESCAPE = "/"


def like_escaped(text: str) -> str:
    """`text` matched literally by LIKE … ESCAPE '/': a % or _ in a search is a character, not a wildcard."""
    return "".join(LIKE_ESCAPE + c if c in "%_/" else c for c in text)


def _filtered(statement: Select, has_q: bool, mime: str) -> Select:
    statement = statement.where(File.owner_id == bindparam("owner_id"))
    if has_q:
        statement = statement.where(folded(File.name).like(bindparam("pattern"), escape=LIKE_ESCAPE))
    if mime == "exact":
        statement = statement.where(File.mime_type == bindparam("mime"))
    elif mime == "family":
        statement = statement.where(File.mime_type.like(bindparam("mime"), escape=LIKE_ESCAPE))
    return statement


# Made on first use, one per shape of filter (and sort): there are 5 shapes and 6 sorts.
_FOUND_QUERIES: dict[tuple, tuple[Read, Read]] = {}


def _found_queries(shape: tuple[bool, str], sort: str) -> tuple[Read, Read]:
    queries = _FOUND_QUERIES.get((shape, sort))
    if queries is None:
        page = (_filtered(select(*PAGE_COLUMNS), *shape).order_by(*order_of(sort))
                .limit(bindparam("limit", type_=Integer)).offset(bindparam("skip", type_=Integer)))
        queries = _FOUND_QUERIES[shape, sort] = (Read(_filtered(select(func.count().label("n")).select_from(File), *shape)),
                                                 Read(page))
    return queries


def find_files(
    db: Session, *, owner_id: int, where: FileFilter, page: int, list_size: int, sort: str = DEFAULT_SORT,
) -> tuple[list[Any], int]:
    """One page of the owner's files that match, and how many match in all.

    A name search cannot use an index (it matches inside names), so both statements read the owner's rows;
    they walk the owner's part of the sort's index, so only the owner's rows are read.
    """
    count, rows = _found_queries(where.shape(), sort)
    params = {"owner_id": owner_id, **where.params()}
    total = count.first(db, params)[0]
    offset = (page - 1) * list_size
    if offset >= total:
        return [], total
    return rows.all(db, {**params, "limit": list_size, "skip": offset}), total


@dataclass(frozen=True)
class WantedRange:
    """The one byte range a request asked for, parsed once, and the If-Range condition it came with."""

    first: int | None  # None: the final `last` bytes ("bytes=-500")
    last: int | None  # None: to the end; inclusive, as HTTP writes it
    if_etag: str | None = None  # If-Range with an ETag: the range only while the content is that version
    if_unmodified: datetime | None = None  # If-Range with a date: the range only if not replaced after it

    def applies(self, record: File) -> bool:
        if self.if_etag is not None:
            return self.if_etag == record.sha256
        if self.if_unmodified is not None:
            return record.updated_at.replace(microsecond=0) <= self.if_unmodified
        return True

    def bounds(self, size: int) -> tuple[int, int] | None:
        """[start, stop) within `size` bytes; None when the range is outside them (416)."""
        if self.first is None:
            return (max(0, size - self.last), size) if self.last and size else None
        if self.first >= size:
            return None
        return self.first, size if self.last is None else min(self.last + 1, size)


@dataclass(frozen=True)
class Download:
    record: File
    stream: BinaryIO  # exactly the bytes of `part`, or of the whole file
    part: tuple[int, int] | None  # [start, stop) when a range is served


def open_own_file(
    db: Session, storage: Storage, *, owner_id: int, file_id: int, wanted: WantedRange | None = None,
) -> Download:
    """The row and an open stream of exactly the bytes it describes, or of the part of them `wanted`
    asks for: an object store then sends only that part.
    """
    for _ in range(RETRIES):
        record = get_own_file(db, owner_id=owner_id, file_id=file_id)
        part = wanted.bounds(record.size) if wanted is not None and wanted.applies(record) else None
        try:
            return Download(record, storage.open(record.storage_key, *(part or ())), part)
        except FileNotFoundError:
            # Replaced or deleted since we read the row (old bytes go only after the commit): read it again.
            db.rollback()
    # The row outlived its bytes (a lost volume, a hand-deleted file): storage-check reports it.
    log.error("file %s: the stored bytes %s are missing", file_id, record.storage_key)
    raise ServiceUnavailable("the file's content is unavailable in storage")


# -- writing -----------------------------------------------------------------------------------


@dataclass
class Intake:
    """The upload as storage reads it: capped at `max_bytes` and at the quota's room while reading, first bytes
    kept for sniffing."""

    stream: ByteStream
    max_bytes: int
    room: Room | None = None
    size: int = 0
    head: bytes = field(default=b"", repr=False)

    def read(self, size: int = -1, /) -> bytes:
        chunk = self.stream.read(size)
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise self.too_large()
        if self.room is not None and not self.room.fits(self.size):
            raise self.room.refusal()
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        return chunk

    def too_large(self) -> FileTooLarge:
        return FileTooLarge.over(self.max_bytes)

    def drain(self) -> None:
        """Read the rest of the file without keeping it: FileTooLarge if it turns out to be over `max_bytes`.

        A file over both limits is answered as too large, whichever limit the stream passed first.
        """
        while chunk := self.stream.read(DRAIN_CHUNK):
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise self.too_large()


# The client's hex SHA-256 of the content, known once the stream has been read to its end (the form part
# carrying it may follow the file); None when the client sent none.
Digest = Callable[[], str | None]


def room_for(db: Session, *, owner_id: int, room: Room, at_least: int = 0, file_id: int | None = None) -> Room:
    """The owner's room for a new file, or for new content of `file_id` (whose old bytes it gives back), before
    the body streams in; 413 now if a body of `at_least` bytes already cannot fit."""
    if file_id is not None:
        room = replace(room, freed=get_own_file(db, owner_id=owner_id, file_id=file_id).size)
        db.commit()  # hold no connection or snapshot while the bytes stream in
    if not room.fits(at_least):
        raise room.refusal()
    return room


def _store(storage: Storage, intake: Intake, digest: Digest | None) -> StoredBlob:
    """The bytes stored whole and checked against the client's digest, or nothing stored at all."""
    try:
        blob = storage.save(intake)
    except QuotaExceeded:
        intake.drain()
        raise
    try:
        expected = digest() if digest is not None else None  # may itself be malformed: 400
        if expected is not None and expected != blob.sha256:
            raise ValidationError.field(
                "sha256", f"does not match the content received, whose SHA-256 is {blob.sha256}")
    except BaseException:
        discard(storage, blob.key)
        raise
    return blob


def upload_file(
    db: Session, storage: Storage, *, owner_id: int, stream: ByteStream, client_name: str, max_bytes: int,
    room: Room, now: datetime, digest: Digest | None = None,
) -> File:
    db.commit()  # hold no connection or snapshot while the bytes stream in
    intake = Intake(stream, max_bytes, room)
    blob = _store(storage, intake, digest)
    with rows_for_stored(db, lambda: discard(storage, blob.key)):
        name = display_name(client_name)
        record = File(
            owner_id=owner_id, name=name, extension=extension_of(name), mime_type=detect_mime(intake.head, name),
            size=blob.size, sha256=blob.sha256, storage_key=blob.key, uploaded_at=now, updated_at=now,
        )
        # The owner's row first (its counters: one conditional UPDATE that refuses to pass the quota), then
        # the file's: one lock order for every writer, no deadlock.
        quota.charge(db, owner_id=owner_id, growth=blob.size, default_quota=room.default_quota, files=1,
                     max_files=room.max_files)
        db.add(record)
        commit_pointing_at(db, blob.key)
    return record


def replace_file(
    db: Session, storage: Storage, *, owner_id: int, file_id: int, stream: ByteStream, client_name: str,
    max_bytes: int, room: Room, now: datetime, digest: Digest | None = None,
) -> File:
    """New bytes under a new key, the row switched in one conditional UPDATE, then the old bytes removed.

    Of two overlapping replacements of one file the first to commit wins; the other stores nothing
    and answers 409, so no client is told its content was saved when it was not. Only the growth
    (new size − old size) counts against the quota.
    """
    record = get_own_file(db, owner_id=owner_id, file_id=file_id)
    old_key, old_size = record.storage_key, record.size
    name = display_name(client_name) if client_name.strip() else record.name
    db.commit()
    intake = Intake(stream, max_bytes, replace(room, freed=old_size))
    blob = _store(storage, intake, digest)
    try:
        quota.charge(db, owner_id=owner_id, growth=blob.size - old_size, default_quota=room.default_quota)
        switched = db.execute(
            update(File)
            .where(File.id == file_id, File.owner_id == owner_id, File.storage_key == old_key)
            .values(
                name=name, extension=extension_of(name), mime_type=detect_mime(intake.head, name),
                size=blob.size, sha256=blob.sha256, storage_key=blob.key, updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if switched != 1:
            db.rollback()
            get_own_file(db, owner_id=owner_id, file_id=file_id)  # 404 if it was deleted meanwhile
            raise Conflict("the file was replaced by another request while this one was uploading")
        commit_pointing_at(db, blob.key)
    except OutcomeUnknown:  # either content may be the file's now: both stay, storage-check removes the other
        raise ServiceUnavailable("the database did not confirm the change; check before retrying") from None
    except BaseException:
        db.rollback()
        discard(storage, blob.key)
        raise
    discard(storage, old_key)
    db.refresh(record)
    return record


def delete_file(db: Session, storage: Storage, *, owner_id: int, file_id: int) -> None:
    for _ in range(RETRIES):
        record = get_own_file(db, owner_id=owner_id, file_id=file_id)
        key = record.storage_key
        quota.charge(db, owner_id=owner_id, growth=-record.size, default_quota=0, files=-1)  # never refused
        # Conditional on the key we read, so bytes of a replacement committed meanwhile are not orphaned
        # (and the size given back is that of the bytes deleted).
        deleted = db.execute(
            delete(File).where(File.id == file_id, File.owner_id == owner_id, File.storage_key == key)
            .execution_options(synchronize_session=False)
        ).rowcount
        if deleted == 1:
            db.commit()
            discard(storage, key)
            return
        db.rollback()
    raise Conflict("the file kept changing; try again")


@contextmanager
def rows_for_stored(db: Session, undo: Callable[[], None]) -> Iterator[None]:
    """The transaction that makes rows point at bytes just stored: on any failure it is rolled back and
    `undo` removes the bytes, unless the failure leaves unknown whether the rows were committed
    (`commit_pointing_at`): then the bytes stay, and storage-check settles it. The only constraint such new
    rows can break is their owner's: the account was deleted meanwhile, so the token that asked is no longer
    any good."""
    try:
        yield
    except OutcomeUnknown:
        raise ServiceUnavailable("the database did not confirm the change; check before retrying") from None
    except IntegrityError:
        db.rollback()
        undo()
        raise InvalidToken("the account of this token no longer exists") from None
    except BaseException:
        db.rollback()
        undo()
        raise


def commit_pointing_at(db: Session, key: str) -> None:
    """Commit a transaction that makes a file row point at the stored bytes `key` (commit_checked): bytes a
    row may point at are never removed on a guess; OutcomeUnknown keeps them."""
    try:
        if commit_checked(db, lambda: db.scalar(select(File.id).where(File.storage_key == key)) is not None):
            log.warning("the answer to a commit was lost; it had taken effect (bytes %s)", key)
    except OutcomeUnknown:
        log.error("the answer to a commit was lost and the database cannot be asked; keeping bytes %s", key)
        raise


def discard(storage: Storage, key: str) -> None:
    """Remove bytes no row points at, and what was made of them (thumbnails); if that fails they stay an
    orphan for the storage-check command."""
    try:
        storage.delete(key)
        storage.delete_derived(key)
    except (OSError, ServiceUnavailable):
        log.exception("could not remove stored bytes %s; storage-check --repair will", key)


# -- consistency check -------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingBytes:
    file_id: int
    owner_id: int
    storage_key: str


@dataclass
class StorageReport:
    rows: int = 0
    blobs: int = 0
    orphans: list[BlobInfo] = field(default_factory=list)  # stored bytes no row points at
    unfinished: list[BlobInfo] = field(default_factory=list)  # writes cut short (by a crash)
    missing: list[MissingBytes] = field(default_factory=list)  # rows whose bytes are gone: not repairable
    derived_orphans: list[DerivedInfo] = field(default_factory=list)  # thumbnails of bytes no row points at
    too_recent: int = 0  # unreferenced, but possibly an upload whose row is being committed right now
    miscounted: list[quota.Miscount] = field(default_factory=list)  # users whose counters disagree with their files


def check_storage(db: Session, storage: Storage, *, min_age: float, repair: bool) -> StorageReport:
    """Compare rows with stored bytes, and users' counters with their rows; with `repair`, remove what no row
    points at and is older than `min_age` s, and recount the users whose counters are wrong."""
    report = StorageReport()
    rows = {key: (file_id, owner_id) for key, file_id, owner_id in db.execute(
        select(File.storage_key, File.id, File.owner_id))}
    report.rows = len(rows)
    now, stored = time.time(), set()
    for blob in storage.blobs():
        stored.add(blob.key)
        if blob.key in rows:
            continue
        if now - blob.modified < min_age:
            report.too_recent += 1
        else:
            report.orphans.append(blob)
    report.blobs = len(stored)
    db.commit()  # a fresh snapshot: rows committed while we listed must not be mistaken for orphans
    claimed = _keys_with_rows(db, [blob.key for blob in report.orphans])
    report.orphans = [blob for blob in report.orphans if blob.key not in claimed]
    report.unfinished = leftover_writes(storage, min_age=min_age)
    # Made of bytes no row points at (their file deleted or replaced while its thumbnail was being made, or
    # their removal failed): never served again, so removed at any age.
    derived = [item for item in storage.derived() if item.key not in rows]
    claimed = _keys_with_rows(db, [item.key for item in derived])
    report.derived_orphans = [item for item in derived if item.key not in claimed]
    gone = [key for key in rows if key not in stored]
    still_referenced = _keys_with_rows(db, gone)
    report.missing = [
        MissingBytes(*rows[key], key) for key in gone if key in still_referenced and not storage.exists(key)
    ]
    db.commit()
    report.miscounted = quota.miscounted(db)
    db.commit()
    if repair:
        for blob in report.orphans:
            storage.delete(blob.key)
            storage.delete_derived(blob.key)
        for key in {item.key for item in report.derived_orphans}:
            storage.delete_derived(key)
        for blob in report.unfinished:
            storage.delete_unfinished(blob.key)
        quota.recount(db, owner_ids=[user.owner_id for user in report.miscounted])
    return report


def leftover_writes(storage: Storage, *, min_age: float) -> list[BlobInfo]:
    """Writes cut short: one whose writer is gone (crashed) is a leftover at once, any other only once
    older than `min_age` s (it may still be under way)."""
    now = time.time()
    return [blob for blob in storage.unfinished()
            if now - blob.modified >= (min(min_age, ABANDONED_AFTER) if blob.abandoned else min_age)]


def _keys_with_rows(db: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), IN_CHUNKS):
        found.update(db.scalars(select(File.storage_key).where(File.storage_key.in_(keys[start:start + IN_CHUNKS]))))
    return found
