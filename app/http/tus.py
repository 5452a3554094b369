"""The tus 1.0.0 protocol's constants and its version check: https://tus.io/protocols/resumable-upload."""
import functools
from typing import Any, Callable

from flask import request

from app.errors import PreconditionFailed

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = "sha1,sha256"
CHUNK_TYPE = "application/offset+octet-stream"


def tus_request(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse (412) a request that does not speak tus 1.0.0; checked after the token, so 401 comes first."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise PreconditionFailed(f"Tus-Resumable: {TUS_VERSION} is required (the only version served)")
        return view(*args, **kwargs)

    return wrapped
