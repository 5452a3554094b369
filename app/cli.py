"""Console commands: `flask --app wsgi <command>`."""
import os
import re
from datetime import timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.db import utcnow
from app.errors import ApiError
from app.housekeeping import run as run_housekeeping
from app.http.context import get_db, passwords, storage
from app.http.parsing import login_of
from app.schemas.requests import check_password
from app.services.account import erase_user, make_superuser, purge, user_exists, user_id_of
from app.services.admin import find_users, reset_factors, set_disabled, user_by_login
from app.services.factors import reseal_all
from app.services.files import check_storage
from app.services.quota import set_quota, usage
from app.services.uploads import check_uploads


def register(app: Flask) -> None:
    app.cli.add_command(create_superuser)
    app.cli.add_command(purge_sessions)
    app.cli.add_command(storage_check)
    app.cli.add_command(housekeeping)
    app.cli.add_command(set_quota_command)
    app.cli.add_command(users)


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
    for item in report.derived_orphans:
        click.echo(f"{action}: {item.variant} of blob {item.key} ({item.size} bytes), no file row points at that blob")
    for row in report.missing:
        click.echo(f"missing bytes: file {row.file_id} of user {row.owner_id} (storage key {row.storage_key})")
    for user in report.miscounted:
        click.echo(
            f"{'recounted' if repair else 'miscounted'}: user {user.login} (id {user.owner_id}) was counted "
            f"{user.files_counted} files, {user.bytes_counted} bytes; has {user.files} files, {user.bytes} bytes"
        )
    click.echo(
        f"checked {report.rows} file rows and {report.blobs} blobs: "
        f"{len(report.orphans) + len(report.unfinished)} orphans{' removed' if repair else ''}, "
        f"{len(report.missing)} rows missing bytes, {report.too_recent} recent blobs skipped, "
        f"{len(report.miscounted)} users miscounted{' recounted' if repair else ''}"
    )
    click.echo(f"checked thumbnails: {len(report.derived_orphans)} {'removed' if repair else 'found'} whose bytes "
               "no file row points at")
    uploads_left = report_uploads(repair=repair, min_age=min_age)
    wrong = report.orphans or report.unfinished or report.derived_orphans or report.miscounted or uploads_left
    if report.missing or (not repair and wrong):
        raise SystemExit(1)


@click.command("housekeeping")
@click.option(
    "--min-age", type=click.FloatRange(min=0), default=None,
    help="Seconds a half-written file or an unowned partial upload must have been left untouched before it goes "
    "(default: HOUSEKEEPING_MIN_AGE, 3600).",
)
@with_appcontext
def housekeeping(min_age: float | None) -> None:
    """Remove what has expired: sessions, codes, rate counters, resumable uploads, a crash's leftovers.

    The server runs this itself every HOUSEKEEPING_INTERVAL seconds; never two at once, over every
    instance on the database (exits 1 while another run holds the lease).
    """
    swept = run_housekeeping(current_app._get_current_object(), min_age=min_age)  # type: ignore[attr-defined]
    if swept is None:
        raise click.ClickException("housekeeping is running already (another instance or command); try again later")
    click.echo(
        f"removed {swept.sessions} sessions, {swept.refresh_tokens} refresh tokens, {swept.login_events} sign-in "
        f"events, {swept.codes} expired codes, {swept.counters} rate counters, {swept.uploads} expired uploads, "
        f"{swept.partial_uploads} unowned partial uploads, {swept.writes} half-written files"
    )


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


class ByteSize(click.ParamType):
    """A number of bytes, optionally with a unit: 500MB (powers of 1000) or 10GiB (powers of 1024)."""

    name = "bytes"
    UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    MAX = 2**63 - 1  # the column's range

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
        unit = match and self.UNITS.get(match[2].lower())
        if not match or unit is None:
            self.fail(f"{value!r} is not a number of bytes (e.g. 1048576, 500MB, 10GiB)", param, ctx)
        size = int(match[1]) * unit
        if size < 1:
            self.fail("must be at least 1 byte; --unlimited lifts the quota", param, ctx)
        if size > self.MAX:
            self.fail(f"must be at most {self.MAX} bytes", param, ctx)
        return size


@click.command("set-quota")
@click.option("--id", "login", required=True, help="The user's login: an email address or a phone number.")
@click.option("--bytes", "size", type=ByteSize(), help="Their own quota: bytes, or e.g. 500MB, 10GiB.")
@click.option("--unlimited", is_flag=True, help="No quota for this user.")
@click.option("--default", "default", is_flag=True, help="Follow QUOTA_BYTES again.")
@with_appcontext
def set_quota_command(login: str, size: int | None, unlimited: bool, default: bool) -> None:
    """Set one user's storage quota: --bytes N, --unlimited, or --default (QUOTA_BYTES).

    A quota below what the user already stores refuses their uploads and growing updates until they
    delete enough; nothing is removed.
    """
    if (size is not None) + unlimited + default != 1:
        raise click.UsageError("give exactly one of --bytes N, --unlimited, --default")
    try:
        login = login_of(login)
    except ApiError as e:
        raise click.BadParameter(e.message, param_hint="'--id'") from None
    db = get_db()
    owner_id = user_id_of(db, login=login)
    if owner_id is None:
        raise click.ClickException(f"no user has the login {login}")
    set_quota(db, owner_id=owner_id, quota=0 if unlimited else size)
    db.commit()
    now = usage(db, owner_id=owner_id, default_quota=current_app.config["QUOTA_BYTES"])
    limit = "unlimited" if now.quota is None else f"{now.quota} bytes"
    source = " (QUOTA_BYTES)" if default else ""
    click.echo(f"{login}: quota {limit}{source}; {now.bytes} bytes in {now.files} file{'' if now.files == 1 else 's'}")


@click.group("users")
def users() -> None:
    """Find, disable, enable and delete users (the console side of /admin/users)."""


@users.command("list")
@click.option("--q", "query", default="", help="Only logins that contain this (any case).")
@click.option("--page", type=click.IntRange(min=1), default=1)
@with_appcontext
def users_list(query: str, page: int) -> None:
    found, total = find_users(get_db(), q=query.strip().lower(), page=page, list_size=LIST_SIZE)
    for user in found:
        flags = ", ".join(name for name, on in (("verified", user.verified), ("disabled", user.disabled),
                                                 ("superuser", user.is_superuser)) if on)
        click.echo(f"{user.login}\t{user.created_at:%Y-%m-%d}\t{user.file_count} files\t{user.bytes_used} bytes"
                   + (f"\t{flags}" if flags else ""))
    pages = (total + LIST_SIZE - 1) // LIST_SIZE
    click.echo(f"{total} user{'' if total == 1 else 's'}" + (f", page {page} of {pages}" if pages > 1 else ""))


@users.command("disable")
@click.argument("login")
@with_appcontext
def users_disable(login: str) -> None:
    """Sign the user out everywhere and refuse them until enabled."""
    detail = _changed(lambda: set_disabled(get_db(), login=_console_login(login), disabled=True, now=utcnow()))
    click.echo(f"{detail.user.login} disabled; every session signed out")


@users.command("enable")
@click.argument("login")
@with_appcontext
def users_enable(login: str) -> None:
    detail = _changed(lambda: set_disabled(get_db(), login=_console_login(login), disabled=False, now=utcnow()))
    click.echo(f"{detail.user.login} enabled")


@users.command("reset-mfa")
@click.argument("login")
@with_appcontext
def users_reset_mfa(login: str) -> None:
    """Remove the user's authenticator app, recovery codes and passkeys (they lost every factor): the
    password alone signs in again. Check who is asking first; the reset shows in their sign-in history."""
    user, passkeys = _changed(lambda: reset_factors(get_db(), login=_console_login(login), now=utcnow()))
    click.echo(f"{user.login}: authenticator app, recovery codes and {passkeys} passkey"
               f"{'' if passkeys == 1 else 's'} removed")


@users.command("reseal-factors")
@with_appcontext
def users_reseal_factors() -> None:
    """Seal every authenticator-app secret under the current JWT_SECRET (after a rotation), so that
    JWT_SECRET_PREVIOUS can be emptied."""
    resealed, unopened = reseal_all(get_db(), current_app.extensions["factor_keys"])
    click.echo(f"{resealed} secret{'' if resealed == 1 else 's'} sealed under the current JWT_SECRET")
    if unopened:
        raise click.ClickException(f"{unopened} secret{'' if unopened == 1 else 's'} opened by no known secret: "
                                   "put the former JWT_SECRET in JWT_SECRET_PREVIOUS, or reset those users")


@users.command("delete")
@click.argument("login")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def users_delete(login: str, yes: bool) -> None:
    """Delete the user with every row and file of theirs; final."""
    login = _console_login(login)
    db = get_db()
    try:
        user = user_by_login(db, login)
    except ApiError as e:
        raise click.ClickException(e.message) from None
    if not yes:
        click.confirm(f"Delete {login} with {user.file_count} files, for good?", abort=True)
    erase_user(db, storage(), user_id=user.id)
    click.echo(f"{login} deleted")


LIST_SIZE = 50


def _changed(change: Any) -> Any:
    try:
        return change()
    except ApiError as e:
        raise click.ClickException(e.message) from None


def _console_login(raw: str) -> str:
    try:
        return login_of(raw)
    except ApiError as e:
        raise click.BadParameter(e.message, param_hint="'LOGIN'") from None
