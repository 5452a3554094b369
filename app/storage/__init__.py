"""Where file bytes live: the interface (`base`), the local-directory backend, and the S3 backend.

`from_config` picks the backend from STORAGE_URL; boto3 is imported only for an s3:// URL.
"""
from typing import Any
from urllib.parse import unquote, urlsplit

from app.storage.base import CHUNK, BlobInfo, ByteStream, DerivedInfo, Storage, StoredBlob
from app.storage.local import LocalStorage

__all__ = ["CHUNK", "BlobInfo", "ByteStream", "DerivedInfo", "LocalStorage", "Storage", "StoredBlob", "from_config"]


def from_config(config: Any) -> Storage:
    """STORAGE_URL unset: UPLOAD_DIR; `file:///path`: that directory; `s3://bucket/prefix`: an object store."""
    url = config.get("STORAGE_URL") or ""
    parts = urlsplit(url)
    if not url:
        return LocalStorage(config["UPLOAD_DIR"])
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalStorage(unquote(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        from app.storage.s3 import S3Storage, make_client, parse_url  # boto3 is imported only when used

        bucket, prefix = parse_url(url)
        client = make_client(
            config.get("AWS_ENDPOINT_URL_S3"), config.get("AWS_ACCESS_KEY_ID"), config.get("AWS_SECRET_ACCESS_KEY"),
            config.get("AWS_DEFAULT_REGION"), float(config["STORAGE_CONNECT_TIMEOUT"]),
            float(config["STORAGE_READ_TIMEOUT"]),
        )
        return S3Storage(client, bucket, prefix, int(config["S3_PART_SIZE"]))
    raise RuntimeError(
        f"STORAGE_URL={url!r} is not supported: use s3://bucket/prefix, file:///absolute/path, "
        "or leave it unset to store files in UPLOAD_DIR"
    )
