"""`flask storage-check [--repair]`: orphans found and removed, rows without bytes reported, on SQLite and MySQL,
for files on local disk and in an S3 bucket."""
import io
import os
import time
from pathlib import Path

import pytest

from tests.conftest import BACKEND_STORAGE, S3_ONCE, stored_files

EVERY_STORAGE = pytest.mark.parametrize(("backend", "storage_kind"), BACKEND_STORAGE, indirect=["backend"])

TWO_HOURS_AGO = time.time() - 7200


def upload(client, headers, content: bytes, name: str = "kept.txt") -> dict:
    response = client.post("/file/upload", headers=headers, data={"file": (io.BytesIO(content), name)})
    assert response.status_code == 201
    return response.json["data"]


def plant(root: Path, relative: str, content: bytes, old: bool = True) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if old:
        os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return path


@EVERY_STORAGE
def test_clean_storage_passes(app, client, signed_in):
    upload(client, signed_in, b"fine")
    result = app.test_cli_runner().invoke(args=["storage-check"])
    assert result.exit_code == 0, result.output
    assert "checked 1 file rows and 1 blobs: 0 orphans, 0 rows missing bytes" in result.output


def test_planted_orphans_are_listed_then_removed_with_repair(app, client, signed_in):
    kept = upload(client, signed_in, b"keep me")
    root = Path(app.config["UPLOAD_DIR"])
    orphan = plant(root, "ab/ab" + "0" * 30, b"nobody points here")
    unfinished = plant(root, ".tmp/tmp123abc.part", b"half an upl")
    recent = plant(root, "cd/cd" + "1" * 30, b"maybe being committed", old=False)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["storage-check"])
    assert result.exit_code == 1
    assert f"orphan: blob {orphan.name} (18 bytes)" in result.output
    assert "orphan: unfinished upload tmp123abc.part" in result.output
    assert recent.name not in result.output and "1 recent blobs skipped" in result.output
    assert orphan.exists() and unfinished.exists()  # listing alone removes nothing

    result = runner.invoke(args=["storage-check", "--repair"])
    assert result.exit_code == 0, result.output
    assert f"removed: blob {orphan.name}" in result.output
    assert not orphan.exists() and not unfinished.exists() and recent.exists()
    assert client.get(f"/file/download/{kept['id']}", headers=signed_in).data == b"keep me"

    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert result.exit_code == 0 and not recent.exists()
    assert runner.invoke(args=["storage-check"]).exit_code == 0


@EVERY_STORAGE
def test_rows_whose_bytes_are_missing_are_reported_not_removed(app, client, signed_in):
    lost = upload(client, signed_in, b"will vanish", "lost.txt")
    [blob] = stored_files(app)
    app.extensions["storage"].delete(blob.name)
    runner = app.test_cli_runner()
    for args in (["storage-check"], ["storage-check", "--repair"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1
        assert f"missing bytes: file {lost['id']} of user" in result.output
        assert f"storage key {blob.name}" in result.output
    assert client.get(f"/file/{lost['id']}", headers=signed_in).status_code == 200  # the row is kept for a human
    download = client.get(f"/file/download/{lost['id']}", headers=signed_in)
    assert download.status_code == 503 and download.json["error"]["code"] == "service_unavailable"


@pytest.mark.parametrize(("backend", "storage_kind"), S3_ONCE, indirect=["backend"])
def test_orphan_objects_and_unfinished_uploads_in_the_bucket(app, client, signed_in):
    kept = upload(client, signed_in, b"keep me")
    storage = app.extensions["storage"]
    bucket, s3 = storage.bucket, storage.client
    orphan = "ab" + "0" * 30
    s3.put_object(Bucket=bucket, Key=storage.name(orphan), Body=b"nobody points here")
    started = s3.create_multipart_upload(Bucket=bucket, Key=storage.name("cd" + "0" * 30))
    for _ in range(2):  # written twice, still one part of 11 bytes (SeaweedFS lists both uploads of it)
        s3.upload_part(Bucket=bucket, Key=started["Key"], UploadId=started["UploadId"], PartNumber=1,
                       Body=b"half an upl")
    foreign = f"{storage.prefix}/notes/readme.txt"  # not named like a key: not ours, never touched
    s3.put_object(Bucket=bucket, Key=foreign, Body=b"an operator's file")
    # S3 keeps whole seconds and has no way to backdate an object: age the plants by waiting.
    time.sleep(2.2)
    recent = "ef" + "1" * 30
    s3.put_object(Bucket=bucket, Key=storage.name(recent), Body=b"maybe being committed")
    runner = app.test_cli_runner()

    result = runner.invoke(args=["storage-check", "--min-age", "2"])
    assert result.exit_code == 1
    assert f"orphan: blob {orphan} (18 bytes)" in result.output
    assert f"orphan: unfinished upload cd{'0' * 30}?uploadId={started['UploadId']} (11 bytes)" in result.output
    assert recent not in result.output and "1 recent blobs skipped" in result.output
    assert "readme" not in result.output

    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "2"])
    assert result.exit_code == 0, result.output
    assert f"removed: blob {orphan}" in result.output
    assert not storage.exists(orphan) and storage.exists(recent)
    assert list(storage.unfinished()) == []
    assert client.get(f"/file/download/{kept['id']}", headers=signed_in).data == b"keep me"

    result = runner.invoke(args=["storage-check", "--repair", "--min-age", "0"])
    assert result.exit_code == 0 and not storage.exists(recent)
    assert runner.invoke(args=["storage-check"]).exit_code == 0
    assert s3.get_object(Bucket=bucket, Key=foreign)["Body"].read() == b"an operator's file"
