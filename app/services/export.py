"""A user's data, taken away (SPEC §10): a zip of `account.json` and every file's bytes under `files/`.

The zip is made as it is sent (zipstream-ng): nothing of it is held in memory or on disk beyond a piece of
one file at a time, whatever its size. Entries are stored uncompressed (the files are mostly compressed
already, and the length is then known before the first byte: the answer carries Content-Length).
"""
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session
from zipstream import ZIP_STORED, ZipStream

from app.db.models import DeviceSession, File, LoginEvent, User
from app.errors import NotFound
from app.services.sessions import role_names
from app.storage import Storage

PIECE = 256 << 10
UNSAFE_IN_NAMES = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class Export:
    chunks: Iterator[bytes]
    size: int


def export_account(db: Session, storage: Storage, *, user_id: int, now: datetime) -> Export:
    """Read everything of the user now (the answer streams after the request's session is gone)."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    files = list(db.scalars(select(File).where(File.owner_id == user_id).order_by(File.id)))
    document = {
        "exported_at": _time(now),
        "account": {"id": user.login, "created_at": _time(user.created_at), "verified": user.verified,
                    "roles": role_names(db, user_id), "quota_bytes": user.quota_bytes},
        "sessions": [
            {"id": s.id, "created_at": _time(s.created_at), "last_used_at": _time(s.last_used_at),
             "expires_at": _time(s.expires_at), "revoked_at": _time(s.revoked_at), "ip": s.ip,
             "user_agent": s.user_agent}
            for s in db.scalars(select(DeviceSession).where(DeviceSession.user_id == user_id)
                                .order_by(DeviceSession.created_at, DeviceSession.id))
        ],
        "login_history": [
            {"at": _time(e.at), "ip": e.ip, "user_agent": e.user_agent, "success": e.success}
            for e in db.scalars(select(LoginEvent).where(LoginEvent.user_id == user_id)
                                .order_by(LoginEvent.at, LoginEvent.id))
        ],
        "files": [
            {"id": f.id, "name": f.name, "path": entry_name(f), "mime_type": f.mime_type, "size": f.size,
             "sha256": f.sha256, "uploaded_at": _time(f.uploaded_at), "updated_at": _time(f.updated_at)}
            for f in files
        ],
    }
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    archive.add(json.dumps(document, indent=2, ensure_ascii=False).encode(), "account.json")
    for f in files:
        archive.add(_bytes_of(storage, f.storage_key), entry_name(f), size=f.size)
    return Export(iter(archive), len(archive))


def entry_name(file: File) -> str:
    """`files/<id>-<name>`: unique whatever the names, and nothing in a name can climb out of `files/`."""
    return f"files/{file.id}-{UNSAFE_IN_NAMES.sub('_', file.name) or 'file'}"


def _bytes_of(storage: Storage, key: str) -> Iterator[bytes]:
    """The stored bytes, opened only when the zip reaches them."""
    with storage.open(key) as stream:
        while piece := stream.read(PIECE):
            yield piece


def _time(value: datetime | None) -> Any:
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"
