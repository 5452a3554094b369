"""What may reach a log: a file link's token never does, and a control character cannot start a line.

Used by the request log (app.http.middleware) and by the server's own loggers (app.server.worker), which the
server's master process loads without the app.
"""
import logging
import re

# C0 controls, DEL, C1 controls, and the two Unicode line breaks some log readers split on.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A file link's token is a credential: whatever follows a `link/` segment never reaches a log (SPEC §7),
# however the path reaches it (/file/link/, /file/./link/, //file//link/, percent-encoded slashes).
LINK_TOKEN_IN_PATH = re.compile(r"(/link/+).+", re.IGNORECASE | re.DOTALL)
LINK_TOKEN_IN_TEXT = re.compile(r"((?:/|%2f)link(?:/|%2f)+)[^\s'\"]+", re.IGNORECASE)
REDACTED = "<redacted>"


def loggable_path(path: str) -> str:
    """The path with a file link's token replaced: `/file/link/<redacted>`."""
    return LINK_TOKEN_IN_PATH.sub(r"\1" + REDACTED, path) if "link" in path.lower() else path


def redact_link_tokens(logger: logging.Logger) -> None:
    """Keep link tokens out of a logger that writes request lines or URIs itself (gunicorn's, werkzeug's)."""
    if not any(isinstance(f, RedactLinkTokens) for f in logger.filters):
        logger.addFilter(RedactLinkTokens())


class RedactLinkTokens(logging.Filter):
    """Rewrites a record whose message holds `/file/link/<token>`; it always lets the record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record fails when it is written, as it would without this filter
            return True
        redacted = LINK_TOKEN_IN_TEXT.sub(r"\1" + REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def escape_controls(text: str) -> str:
    """`\\x0a` for a newline and the like: a path such as `/x%0AFORGED` cannot start a log line of its own."""
    return CONTROL.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
