"""The resumable uploads' (tus) headers and bodies, as the document declares them."""
from app.errors import PreconditionFailed
from app.http.tus import CHUNK_TYPE, TUS_VERSION
from app.openapi.fragments import header, header_parameter

BYTES = {"type": "integer", "minimum": 0}
CHECKSUM = {"type": "string", "pattern": "^(|sha1 [A-Za-z0-9+/]{27}=|sha256 [A-Za-z0-9+/]{43}=)$"}
METADATA = {"type": "string", "pattern": r"^([!-+\--~]+( ([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)?"
                                         r"(,[!-+\--~]+( ([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)?)*)?$"}
TUS_RESUMABLE = header_parameter(
    "Tus-Resumable", "The protocol version: `1.0.0`; anything else (or nothing) is 412.",
    {"type": "string", "const": TUS_VERSION}, required=True)
RESUMABLE_HEADER = {"Tus-Resumable": header("`1.0.0`.", {"type": "string", "const": TUS_VERSION})}
EXPIRES_HEADER = {"Upload-Expires": header(
    "When the upload expires unless another chunk arrives (an RFC 9110 date).", {"type": "string"})}
OFFSET_HEADER = {"Upload-Offset": header("Bytes of the upload stored so far.", {"type": "integer", "minimum": 0})}
CHUNK_BODY = {
    "required": False,
    "description": "The chunk's bytes (`Content-Type: application/offset+octet-stream`), streamed to storage.",
    "content": {CHUNK_TYPE: {"schema": {"type": "string", "format": "binary"}}},
}
STATE_ERRORS = (PreconditionFailed,)  # every tus route but OPTIONS
