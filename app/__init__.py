"""Application factory: config, database, security, CORS, limits, errors, blueprints, CLI."""
import logging
import os
import re
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from app import cli, db, openapi, storage
from app.errors import register_error_handlers
from app.extensions import limiter
from app.security import Passwords, TokenPolicy
from config import Config

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
JSON_BODY_LIMIT = 1 << 20  # non-upload bodies; upload routes raise their own limit
log = logging.getLogger("app.request")


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=(overrides or {}).get("INSTANCE_DIR", Config.INSTANCE_DIR))
    app.config.from_object(Config)
    app.config.update(overrides or {})
    app.config["MAX_CONTENT_LENGTH"] = JSON_BODY_LIMIT
    app.json.sort_keys = False
    app.json.ensure_ascii = False  # names such as "отчёт.pdf" as UTF-8, not \u escapes
    configure_logging(app)
    configure_security(app)
    db.init_app(app)
    storage.init_app(app)
    configure_http(app)
    register_error_handlers(app)
    register_blueprints(app)
    cli.register(app)
    return app


def configure_logging(app: Flask) -> None:
    logger = logging.getLogger("app")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def configure_security(app: Flask) -> None:
    secret = app.config["JWT_SECRET"]
    if app.config["APP_ENV"] == "production":
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
    )
    app.extensions["passwords"] = Passwords(
        app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"], app.config["ARGON2_PARALLELISM"]
    )


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


def configure_http(app: Flask) -> None:
    if app.config["TRUSTED_PROXIES"] > 0:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    CORS(
        app,
        origins="*",
        send_wildcard=True,
        vary_header=False,
        supports_credentials=False,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Range", "If-None-Match", "If-Range"],
        expose_headers=[
            "Content-Disposition", "Content-Length", "Content-Range", "ETag",
            "Retry-After", "X-Request-ID", "Accept-Ranges",
        ],
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
    )
    if app.config["RATELIMIT_STORAGE_URI"].startswith("redis"):
        # redis-py waits forever by default; a Redis that stops answering must not hold up every sign-in.
        timeout = app.config["RATELIMIT_STORAGE_TIMEOUT"]
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": timeout, "socket_timeout": timeout})
    limiter.init_app(app)

    @app.before_request
    def start_request() -> Response | None:
        g.request_id = request_id_for_request()
        g.started = time.perf_counter()
        # A CORS preflight is answered 2xx on any path, even one that will be 404 or 405, so the
        # browser lets the page read the real request's JSON error instead of a bare CORS failure.
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return Response(status=204)
        return None

    @app.after_request
    def finish_request(response):
        request_id = g.get("request_id") or request_id_for_request()
        response.headers["X-Request-ID"] = request_id
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info("%s %s %s %s %.1fms", request_id, request.method, request.path, response.status_code, elapsed_ms)
        return response


def request_id_for_request() -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex


def register_blueprints(app: Flask) -> None:
    from app.routes import account, auth, files, info, roles

    app.register_blueprint(auth.bp)
    app.register_blueprint(info.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(roles.bp)
    app.register_blueprint(files.bp)
    openapi.init_app(app)
