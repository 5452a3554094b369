"""Application factory: config, database, security, CORS, limits, errors, blueprints, CLI."""
import importlib
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from app import cli, db, metrics, openapi, storage
from app.http import middleware
from app.http.converters import CONVERTERS
from app.http.context import close_db
from app.http.handlers import register_error_handlers
from app.messages import Outbox
from app.ratelimit import counters
from app.ratelimit.throttle import Limit, Throttle
from app.security import LINK_EXPIRY_MAX, LinkSigner, Passwords, SecretBox, TokenPolicy
from app.server import logformat
from app.services.codes import CodeKey
from app.services.factors import FactorKeys
from app.services.passkeys import RelyingParty
from config import Config

JSON_BODY_LIMIT = 1 << 20  # non-upload bodies; upload routes raise their own limit


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=(overrides or {}).get("INSTANCE_DIR", Config.INSTANCE_DIR))
    app.config.from_object(Config)
    app.config.update(overrides or {})
    app.config["MAX_CONTENT_LENGTH"] = JSON_BODY_LIMIT
    app.json.sort_keys = False
    app.json.ensure_ascii = False  # names such as "отчёт.pdf" as UTF-8, not \u escapes
    configure_logging(app)
    configure_security(app)
    configure_messages(app)
    db.init_app(app)
    app.teardown_appcontext(close_db)
    configure_metrics(app)
    app.extensions["storage"] = storage.from_config(app.config)
    middleware.install(app)
    configure_limits(app)
    register_error_handlers(app)
    register_blueprints(app)
    cli.register(app)
    return app


def configure_logging(app: Flask) -> None:
    logger = logging.getLogger("app")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stderr))
        logger.propagate = False
    app.config["LOG_FORMAT"] = logformat.check(str(app.config["LOG_FORMAT"]).strip().lower())
    json_lines = app.config["LOG_FORMAT"] == "json"
    for handler in logger.handlers:
        handler.setFormatter(logformat.JsonFormatter() if json_lines
                             else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


METRICS_TOKEN_MIN = 16  # characters: a token anyone could guess would publish the numbers


def configure_metrics(app: Flask) -> None:
    """Metrics are counted only where they are served: with METRICS_TOKEN, or on METRICS_PORT."""
    token, port = app.config["METRICS_TOKEN"], int(app.config["METRICS_PORT"] or 0)
    if token and len(token) < METRICS_TOKEN_MIN:
        raise RuntimeError(f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN} characters (e.g. `openssl rand -hex 24`)")
    if not 0 <= port <= 65535:
        raise RuntimeError(f"METRICS_PORT must be a TCP port (1 to 65535), or empty; not {port}")
    app.extensions["metrics_on"] = bool(token or port)
    if app.extensions["metrics_on"]:
        metrics.watch_pool(app.extensions["engine"], "transactions")
        if app.extensions["autocommit_engine"].pool is not app.extensions["engine"].pool:  # SQLite shares one
            metrics.watch_pool(app.extensions["autocommit_engine"], "autocommit")


def configure_security(app: Flask) -> None:
    secret = app.config["JWT_SECRET"]
    if app.config["APP_ENV"] == "production":
        if app.debug:  # the debugger runs code sent to it, and error answers would carry stack traces
            raise RuntimeError("APP_ENV=production refuses to start in debug mode: unset FLASK_DEBUG (and DEBUG)")
        if len(secret.encode()) < 32:
            raise RuntimeError("APP_ENV=production needs JWT_SECRET of at least 32 bytes (e.g. `openssl rand -base64 48`)")
    elif not secret:
        secret = instance_secret(Path(app.instance_path) / "jwt_secret")
    app.config["JWT_SECRET"] = secret
    app.extensions["tokens"] = TokenPolicy(
        secret=secret,
        algorithm=app.config["JWT_ALGORITHM"],
        access_ttl=app.config["ACCESS_TOKEN_TTL"],
        refresh_ttl=app.config["REFRESH_TOKEN_TTL"],
        reuse_grace=app.config["REFRESH_REUSE_GRACE"],
        session_max_age=app.config["SESSION_MAX_AGE"],
        max_sessions=app.config["MAX_SESSIONS_PER_USER"],
        retention=app.config["SESSION_RETENTION_DAYS"] * 24 * 3600,
        leeway=jwt_leeway(app.config["JWT_LEEWAY"]),
    )
    app.config["LINK_MAX_TTL"] = link_max_ttl(app.config["LINK_MAX_TTL"])
    app.extensions["link_signer"] = LinkSigner(secret)
    app.extensions["passwords"] = Passwords(
        app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"], app.config["ARGON2_PARALLELISM"]
    )
    app.extensions["code_key"] = CodeKey.from_secret(secret)
    previous = tuple(s.strip() for s in app.config["JWT_SECRET_PREVIOUS"].split(",") if s.strip())
    app.extensions["factor_keys"] = FactorKeys(
        box=SecretBox(secret, previous), key=app.extensions["code_key"], issuer=app.config["WEBAUTHN_RP_NAME"],
        ttl=app.config["MFA_TOKEN_TTL"],
    )
    app.extensions["relying_party"] = relying_party(app.config)


def relying_party(config: dict) -> RelyingParty:
    """WEBAUTHN_RP_ID, else PUBLIC_URL's host, else localhost; origins as given (checked to be origins)."""
    rp_id = config["WEBAUTHN_RP_ID"].strip() or urlsplit(config["PUBLIC_URL"]).hostname or "localhost"
    origins = tuple(o.strip().rstrip("/") for o in config["WEBAUTHN_ORIGINS"].split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise RuntimeError(f"WEBAUTHN_ORIGINS: {origin!r} is not an origin (scheme://host[:port])")
    return RelyingParty(id=rp_id, name=config["WEBAUTHN_RP_NAME"], origins=origins)


def configure_messages(app: Flask) -> None:
    config = app.config
    app.extensions["outbox"] = Outbox(
        mail_url=config["MAIL_URL"], mail_from=config["MAIL_FROM"], sms_url=config["SMS_URL"],
        timeout=config["MAIL_TIMEOUT"], retries=config["MAIL_RETRIES"], ca_file=config["MAIL_CA_FILE"],
        log_dir=Path(app.instance_path) / "mail",
    )


def jwt_leeway(seconds: int) -> int:
    """A negative leeway would end every token early; it is a mistake in the settings, not a policy."""
    if int(seconds) < 0:
        raise RuntimeError(f"JWT_LEEWAY must be 0 or more seconds, not {seconds}")
    return int(seconds)


LINK_TTL_LIMIT = 10 * 365 * 24 * 3600  # far above any short-lived link; keeps expiries inside the token's field


def link_max_ttl(seconds: int) -> int:
    seconds = int(seconds)
    if not 1 <= seconds <= LINK_TTL_LIMIT or time.time() + seconds >= LINK_EXPIRY_MAX:
        raise RuntimeError(f"LINK_MAX_TTL must be 1 to {LINK_TTL_LIMIT} seconds, not {seconds}")
    return seconds


def instance_secret(path: Path) -> str:
    """A development secret made once and kept, so tokens survive restarts; safe when workers race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: exactly one writer wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def configure_limits(app: Flask) -> None:
    config = app.config
    database = counters.DatabaseCounters(app.extensions["autocommit_engine"])
    app.extensions["throttle"] = Throttle(
        counters=counters.from_config(config, database),
        login_failures=database,
        signin=Limit.parse(config["RATELIMIT_SIGNIN"]),
        signup=Limit.parse(config["RATELIMIT_SIGNUP"]),
        refresh=Limit.parse(config["RATELIMIT_REFRESH"]),
        reauth=Limit.parse(config["RATELIMIT_REAUTH"]),
        account=Limit.parse(config["RATELIMIT_ACCOUNT"]),
        mail=Limit.parse(config["RATELIMIT_MAIL"]),
        prefix=config["RATELIMIT_KEY_PREFIX"],
        enabled=config["RATELIMIT_ENABLED"],
    )


# app.routes.*, in this order
ROUTES = ("auth", "recovery", "info", "ops", "account", "factors", "admin", "roles", "files", "links", "uploads")


def load_modules() -> None:
    """Import what `create_app` will need, without building anything."""
    for name in ROUTES:
        importlib.import_module(f"app.routes.{name}")


def register_blueprints(app: Flask) -> None:
    app.url_map.converters.update(CONVERTERS)
    for name in ROUTES:
        if name == "ops" and not app.extensions["metrics_on"]:
            continue  # /metrics is no route at all (nor in the OpenAPI document) unless it is served
        app.register_blueprint(importlib.import_module(f"app.routes.{name}").bp)
    openapi.init_app(app)
