"""File links: a short-lived URL that serves one version of one file while the session that made it lives."""
import logging
import math
from dataclasses import dataclass
from typing import Any
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from app.db import autocommit
from app.db.models import ID_MAX, DeviceSession, File
from app.errors import LinkExpired, NotFound, ServiceUnavailable
from app.security import LinkClaims, LinkSigner
from app.services.files import RETRIES, Download, WantedRange, get_own_file
from app.storage import Storage

log = logging.getLogger("app.files")

EPOCH = datetime(1970, 1, 1)
# What a browser shows without running anything in it: images but SVG (which may carry script), PDF,
# sound, video and plain text. Anything else is served as an attachment.
INLINE_TYPES = {"application/pdf", "text/plain"}
INLINE_FAMILIES = ("image/", "audio/", "video/")
NOT_INLINE = {"image/svg+xml"}

# Built once. The file at the version the link names, joined to the live session that made it, which must
# belong to the file's owner: deleted, replaced or signed out, and there is no row.
LINKED_FILE = (
    select(File.id, File.name, File.mime_type, File.size, File.sha256, File.storage_key, File.updated_at)
    .join(DeviceSession, and_(
        DeviceSession.id == bindparam("sid"), DeviceSession.user_id == File.owner_id,
        DeviceSession.live(bindparam("now")),
    ))
    .where(File.id == bindparam("file_id"), File.storage_key == bindparam("key"))
)


def shows_inline(mime_type: str) -> bool:
    essence = mime_type.split(";", 1)[0].strip().lower()
    if essence in NOT_INLINE:
        return False
    return essence in INLINE_TYPES or essence.startswith(INLINE_FAMILIES)


def disposition_of(inline: bool) -> str:
    return "inline" if inline else "attachment"


def epoch_seconds(moment: datetime) -> float:
    """Naive UTC → seconds since the epoch."""
    return moment.replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Link:
    token: str
    expires_at: datetime  # naive UTC, whole seconds
    disposition: str


def create_link(
    db: Session, signer: LinkSigner, *, owner_id: int, file_id: int, session_id: str, seconds: int, inline: bool,
    now: datetime,
) -> Link:
    """A link to the file as it is now; `inline` only where the content is safe to show (else attachment).

    The expiry is a whole second, rounded up: the link lives at least `seconds`, less than one more.
    """
    record = get_own_file(db, owner_id=owner_id, file_id=file_id)
    inline = inline and shows_inline(record.mime_type)
    expires = math.ceil(epoch_seconds(now)) + seconds
    token = signer.sign(LinkClaims(record.id, record.storage_key, session_id, expires, inline))
    return Link(token, EPOCH + timedelta(seconds=expires), disposition_of(inline))


@dataclass(frozen=True)
class LinkedDownload:
    download: Download  # its `record` is a row with the columns of LINKED_FILE
    disposition: str


def read_claims(signer: LinkSigner, token: str, now: datetime) -> LinkClaims:
    """A link's claims: 404 for a token that is not ours, 410 past its expiry (before the database is asked)."""
    claims = signer.read(token)
    if claims.expires <= epoch_seconds(now):
        raise LinkExpired()
    if claims.file_id > ID_MAX:  # only ever signed by a future format; keep it out of the query
        raise NotFound("this file link is not valid")
    return claims


def linked_row(db: Session, claims: LinkClaims, now: datetime) -> Any:
    """The file at the version the link names, while the session that made it lives: one statement; 404 if not."""
    parameters = {"file_id": claims.file_id, "key": claims.storage_key, "sid": claims.session_id, "now": now}
    with autocommit(db).connect() as connection:  # one statement: no transaction to begin and end
        row = connection.execute(LINKED_FILE, parameters).first()
    if row is None:
        raise NotFound("this file link is no longer valid")
    return row


def open_linked_file(
    db: Session, storage: Storage, signer: LinkSigner, *, token: str, wanted: WantedRange | None,
    now: datetime,
) -> LinkedDownload:
    """The file a link names, opened, after one query: 404 for a token that is not ours or no longer valid,
    410 for one past its expiry (checked before the database is asked)."""
    claims = read_claims(signer, token, now)
    for _ in range(RETRIES):
        row = linked_row(db, claims, now)
        part = wanted.bounds(row.size) if wanted is not None and wanted.applies(row) else None
        try:
            stream = storage.open(row.storage_key, *(part or ()))
        except FileNotFoundError:
            continue  # deleted or replaced since the row was read (bytes go after the commit): ask again
        # Served inline only if the content still qualifies (it cannot change under the same key).
        inline = claims.inline and shows_inline(row.mime_type)
        return LinkedDownload(Download(row, stream, part), disposition_of(inline))
    log.error("file %s: the stored bytes %s are missing", claims.file_id, claims.storage_key)
    raise ServiceUnavailable("the file's content is unavailable in storage")
