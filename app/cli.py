"""Console commands: `flask --app wsgi <command>`."""
import os
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.db import get_db, utcnow
from app.errors import ApiError
from app.extensions import passwords, storage
from app.services.account import make_superuser, purge, user_exists
from app.services.files import check_storage
from app.services.uploads import check_uploads
from app.validation import check_password, login_of


def register(app: Flask) -> None:
    app.cli.add_command(create_superuser)
    app.cli.add_command(purge_sessions)
    app.cli.add_command(storage_check)


@click.command("create-superuser")
@click.option("--id", "login", required=True, help="Login of the superuser: an email address or a phone number.")
@click.option("--set-password", is_flag=True, help="Also replace the password of an existing user.")
@with_appcontext
def create_superuser(login: str, set_password: bool) -> None:
    """Create a superuser, or promote an existing user (their password is kept unless --set-password).

    The password comes from SUPERUSER_PASSWORD, else from a hidden prompt asked twice.
    """
    try:
        login = login_of(login)
        db = get_db()
        password = None
        if set_password or not user_exists(db, login=login):
            password = check_password(
                os.environ.get("SUPERUSER_PASSWORD")
                or click.prompt("Password", hide_input=True, confirmation_prompt=True)
            )
        created = make_superuser(db, passwords=passwords(), login=login, password=password, now=utcnow())
    except ApiError as e:
        raise click.ClickException(e.message) from None
    if created:
        click.echo(f"created superuser {login}")
    elif password is not None:
        click.echo(f"{login} is a superuser; password replaced and every session signed out")
    else:
        click.echo(f"{login} is a superuser; password unchanged")


@click.command("purge-sessions")
@click.option(
    "--older-than-days", type=click.IntRange(min=0), default=None,
    help="Age after which revoked sessions, expired refresh tokens and sign-in events go "
    "(default: SESSION_RETENTION_DAYS, 30). Expired sessions always go.",
)
@with_appcontext
def purge_sessions(older_than_days: int | None) -> None:
    """Delete expired sessions and, after the retention age, revoked sessions and old sign-in events."""
    days = current_app.config["SESSION_RETENTION_DAYS"] if older_than_days is None else older_than_days
    result = purge(get_db(), now=utcnow(), keep=timedelta(days=days))
    click.echo(
        f"removed {result.sessions} sessions, {result.refresh_tokens} refresh tokens, "
        f"{result.login_events} sign-in events"
    )


@click.command("storage-check")
@click.option("--repair", is_flag=True, help="Remove the orphans found (rows missing their bytes cannot be repaired).")
@click.option(
    "--min-age", type=click.FloatRange(min=0), default=3600.0, show_default=True,
    help="Seconds an unreferenced blob must have existed to count as an orphan; younger ones may be "
    "uploads whose row is being committed.",
)
@with_appcontext
def storage_check(repair: bool, min_age: float) -> None:
    """List stored bytes no file row points at (orphans) and file rows whose bytes are missing.

    Exits 1 while anything is left wrong: rows missing bytes, or orphans not removed.
    """
    try:
        report = check_storage(get_db(), storage(), min_age=min_age, repair=repair)
    except ApiError as e:  # the object store is unreachable: say so, without a traceback
        raise click.ClickException(e.message) from None
    action = "removed" if repair else "orphan"
    for blob in report.orphans:
        click.echo(f"{action}: blob {blob.key} ({blob.size} bytes), no file row points at it")
    for blob in report.unfinished:
        click.echo(f"{action}: unfinished upload {blob.key} ({blob.size} bytes)")
    for row in report.missing:
        click.echo(f"missing bytes: file {row.file_id} of user {row.owner_id} (storage key {row.storage_key})")
    click.echo(
        f"checked {report.rows} file rows and {report.blobs} blobs: "
        f"{len(report.orphans) + len(report.unfinished)} orphans{' removed' if repair else ''}, "
        f"{len(report.missing)} rows missing bytes, {report.too_recent} recent blobs skipped"
    )
    uploads_left = report_uploads(repair=repair, min_age=min_age)
    if report.missing or (not repair and (report.orphans or report.unfinished or uploads_left)):
        raise SystemExit(1)


def report_uploads(*, repair: bool, min_age: float) -> bool:
    """Expired resumable uploads and partial uploads no upload owns; True if any was found."""
    try:
        report = check_uploads(get_db(), storage(), now=utcnow(), min_age=min_age, repair=repair)
    except ApiError as e:
        raise click.ClickException(e.message) from None
    action = "removed" if repair else "expired"
    for upload in report.expired:
        click.echo(f"{action}: upload {upload.id} of user {upload.owner_id} "
                   f"({upload.received} of {upload.length} bytes; reservation {'released' if repair else 'held'})")
    for partial in report.orphans:
        click.echo(f"{'removed' if repair else 'orphan'}: partial upload {partial.ref} ({partial.size} bytes), "
                   "no upload row owns it")
    click.echo(f"checked uploads: {len(report.expired)} expired, {len(report.orphans)} orphan partial uploads"
               f"{' removed' if repair else ''}, {report.finished} finished uploads past expiry"
               f"{' forgotten' if repair else ''}")
    return bool(report.expired or report.orphans)
