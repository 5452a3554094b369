"""Settings, read once from the environment (a `.env` file is optional; the real environment wins)."""
import os
from pathlib import Path

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent


def load_env_file() -> None:
    """Read `.env` (or the file DOTENV_PATH names) into os.environ; variables already set are kept.

    Called on import, and by gunicorn.conf.py, so the server's settings come from the same file."""
    load_dotenv(os.environ.get("DOTENV_PATH") or BASE_DIR / ".env", override=False)


load_env_file()
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", BASE_DIR / "instance"))


def as_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def default_database_url() -> str:
    return os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE_DIR / 'app.db'}"


class Config:
    APP_ENV = os.environ.get("APP_ENV", "development")
    DEBUG = as_bool(os.environ.get("FLASK_DEBUG"))
    INSTANCE_DIR = str(INSTANCE_DIR)

    # database options
    DATABASE_URL = default_database_url()
    DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
    # Longest wait for the database (SPEC §13): one that stops answering gives 503 within it, not a hung request.
    DB_TIMEOUT = int(os.environ.get("DB_TIMEOUT", "5"))
    DB_CONNECT_TIMEOUT = int(os.environ.get("DB_CONNECT_TIMEOUT") or DB_TIMEOUT)
    DB_READ_TIMEOUT = int(os.environ.get("DB_READ_TIMEOUT") or DB_TIMEOUT)  # any one reply of the server

    # security options
    JWT_SECRET = os.environ.get("JWT_SECRET", "")
    JWT_ALGORITHM = "HS256"
    ACCESS_TOKEN_TTL = int(os.environ.get("ACCESS_TOKEN_TTL", "600"))
    REFRESH_TOKEN_TTL = int(os.environ.get("REFRESH_TOKEN_TTL", str(30 * 24 * 3600)))
    REFRESH_REUSE_GRACE = int(os.environ.get("REFRESH_REUSE_GRACE", "10"))
    # Seconds of clock difference between instances that access tokens' iat/nbf/exp allow.
    JWT_LEEWAY = int(os.environ.get("JWT_LEEWAY", "5"))
    # argon2id, OWASP's "m=19 MiB, t=2, p=1": about 30 ms on one core, so two cores sign in ~60 users/s
    ARGON2_TIME_COST = int(os.environ.get("ARGON2_TIME_COST", "2"))
    ARGON2_MEMORY_KIB = int(os.environ.get("ARGON2_MEMORY_KIB", "19456"))
    ARGON2_PARALLELISM = int(os.environ.get("ARGON2_PARALLELISM", "1"))
    SESSION_TOUCH_SECONDS = int(os.environ.get("SESSION_TOUCH_SECONDS", "60"))
    # A session ends this long after its sign-in however often it is refreshed; a user holds at most this many.
    SESSION_MAX_AGE = int(os.environ.get("SESSION_MAX_AGE", str(90 * 24 * 3600)))
    MAX_SESSIONS_PER_USER = int(os.environ.get("MAX_SESSIONS_PER_USER", "100"))
    DEFAULT_PHONE_REGION = os.environ.get("DEFAULT_PHONE_REGION", "RU")
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    # flask purge-sessions: days revoked sessions and sign-in events are kept
    SESSION_RETENTION_DAYS = int(os.environ.get("SESSION_RETENTION_DAYS", "30"))

    # rate limits
    RATELIMIT_ENABLED = as_bool(os.environ.get("RATELIMIT_ENABLED"), default=True)
    RATELIMIT_SIGNIN = os.environ.get("RATELIMIT_SIGNIN", "10 per minute")
    RATELIMIT_SIGNUP = os.environ.get("RATELIMIT_SIGNUP", "30 per hour")
    RATELIMIT_REFRESH = os.environ.get("RATELIMIT_REFRESH", "60 per minute")
    RATELIMIT_REAUTH = os.environ.get("RATELIMIT_REAUTH", "5 per 15 minutes")
    RATELIMIT_ACCOUNT = os.environ.get("RATELIMIT_ACCOUNT", "10 per hour")  # PATCH /user as a whole, per user
    # memory://: the counters live in the service's own database, shared by every worker (and every instance
    # on that database); redis://…: in Redis, falling back to the database while Redis is unreachable.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "")
    RATELIMIT_STORAGE_TIMEOUT = float(os.environ.get("RATELIMIT_STORAGE_TIMEOUT", "1"))

    # outgoing messages (SPEC §10)
    # smtp://user:pass@host:port (STARTTLS when offered), smtps://… (TLS), or log: the server log and instance/mail/
    MAIL_URL = os.environ.get("MAIL_URL", "log")
    MAIL_FROM = os.environ.get("MAIL_FROM", "no-reply@localhost")
    MAIL_CA_FILE = os.environ.get("MAIL_CA_FILE", "")  # CA bundle the SMTP server's certificate is checked against
    MAIL_TIMEOUT = float(os.environ.get("MAIL_TIMEOUT", "10"))  # each delivery attempt; never the request's wait
    MAIL_RETRIES = int(os.environ.get("MAIL_RETRIES", "3"))  # attempts after the first, 2, 8, 32 s apart
    SMS_URL = os.environ.get("SMS_URL", "log")  # log, or an https:// webhook receiving {"to", "text"} as JSON
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "").rstrip("/")  # where links in messages point; "" → the request's origin
    RESET_TOKEN_TTL = int(os.environ.get("RESET_TOKEN_TTL", "900"))
    VERIFY_TOKEN_TTL = int(os.environ.get("VERIFY_TOKEN_TTL", "86400"))
    RATELIMIT_MAIL = os.environ.get("RATELIMIT_MAIL", "5 per hour")  # per login and per address

    # second factor and passkeys (SPEC §11)
    # Former values of JWT_SECRET, comma-separated: TOTP secrets sealed under them still open, and are sealed
    # again under the current one when used (or all at once by `flask users reseal-factors`).
    JWT_SECRET_PREVIOUS = os.environ.get("JWT_SECRET_PREVIOUS", "")
    MFA_TOKEN_TTL = int(os.environ.get("MFA_TOKEN_TTL", "300"))  # the second step of a sign-in; WebAuthn challenges
    # The passkeys' relying party: a domain that is the web client's host or a parent of it; "" → PUBLIC_URL's
    # host, else "localhost". The name is shown by authenticators and as the issuer in authenticator apps.
    WEBAUTHN_RP_ID = os.environ.get("WEBAUTHN_RP_ID", "")
    WEBAUTHN_RP_NAME = os.environ.get("WEBAUTHN_RP_NAME", "Files")
    # The web client's origins, comma-separated (https://app.example.com); "" → any origin on the RP id or
    # under it (https, or http on localhost), which is what browsers themselves allow for that RP id.
    WEBAUTHN_ORIGINS = os.environ.get("WEBAUTHN_ORIGINS", "")
    REQUIRE_VERIFIED = as_bool(os.environ.get("REQUIRE_VERIFIED"))  # file routes refuse unverified users (403)

    # files
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(BASE_DIR / "uploads"))
    STORAGE_URL = os.environ.get("STORAGE_URL", "")  # "" → UPLOAD_DIR; file:///path; s3://bucket/prefix
    # S3-compatible storage: boto3's own variables; unset ones fall back to boto3's chain (~/.aws, instance role)
    AWS_ENDPOINT_URL_S3 = os.environ.get("AWS_ENDPOINT_URL_S3", "")
    AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "")
    AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    AWS_DEFAULT_REGION = os.environ.get("AWS_DEFAULT_REGION", "")
    # Longest wait for a frozen object store (SPEC §13), over its two attempts: each gets half.
    STORAGE_TIMEOUT = float(os.environ.get("STORAGE_TIMEOUT", "5"))
    STORAGE_CONNECT_TIMEOUT = float(os.environ.get("STORAGE_CONNECT_TIMEOUT") or STORAGE_TIMEOUT / 2)
    STORAGE_READ_TIMEOUT = float(os.environ.get("STORAGE_READ_TIMEOUT") or STORAGE_TIMEOUT / 2)
    S3_PART_SIZE = int(os.environ.get("S3_PART_SIZE", str(8 << 20)))  # one part per upload is held in memory
    MAX_UPLOAD_BYTES = int(os.environ.get("MAX_UPLOAD_BYTES", str(1 << 30)))
    # Per user, over their files' sizes altogether; 0 = unlimited. `flask set-quota` sets one user's own.
    QUOTA_BYTES = int(os.environ.get("QUOTA_BYTES", str(10 << 30)))
    LINK_MAX_TTL = int(os.environ.get("LINK_MAX_TTL", "86400"))  # seconds a file link may live at most
    # The most pixels (width × height, read from the header) a thumbnail is made of; more is 415, never decoded.
    # 50 million: a 48-megapixel photo still has thumbnails, and one decode holds at most ~200 MB.
    THUMBNAIL_MAX_PIXELS = int(os.environ.get("THUMBNAIL_MAX_PIXELS", "50000000"))
    UPLOAD_EXPIRY = int(os.environ.get("UPLOAD_EXPIRY", "86400"))
    MAX_FILES_PER_USER = int(os.environ.get("MAX_FILES_PER_USER", "100000"))  # empty files too; 0: no cap
    MAX_OPEN_UPLOADS = int(os.environ.get("MAX_OPEN_UPLOADS", "100"))  # unfinished resumable uploads per user  # seconds an unfinished resumable upload is kept

    # operations (SPEC §12)
    # GET /metrics answers `Authorization: Bearer <METRICS_TOKEN>` on the service's port, and anyone on
    # 127.0.0.1:METRICS_PORT; with neither set it is not served and nothing is counted.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
    METRICS_PORT = int(os.environ.get("METRICS_PORT") or 0)
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()  # text, or json: one object per line
    # The server runs `flask housekeeping` itself at most this often across every instance on the database; 0: never.
    HOUSEKEEPING_INTERVAL = int(os.environ.get("HOUSEKEEPING_INTERVAL", "3600"))
    # Seconds a half-written file (a crash's leftover) must have been left untouched before housekeeping removes it.
    HOUSEKEEPING_MIN_AGE = int(os.environ.get("HOUSEKEEPING_MIN_AGE", "3600"))

