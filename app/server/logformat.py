"""LOG_FORMAT=json: each log record as one JSON object on one line, for the app's loggers and gunicorn's.

A request's line carries its fields (`request_id`, `method`, `path`, `status`, `duration_ms`, `user_id`) at
the top level; any other record has `message`, and a traceback under `exception`. json.dumps escapes
every control character and, with ensure_ascii, every line break a log reader might split on, so no
input can start a line of its own. Loaded by gunicorn's master too, which has no app.
"""
import json
import logging
import math
import time
from json.encoder import encode_basestring_ascii

from gunicorn import glogging

FORMATS = ("text", "json")


def check(log_format: str) -> str:
    if log_format not in FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    return log_format


ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
QUOTE = encode_basestring_ascii  # json's own C string encoder: escapes controls, quotes and anything non-ASCII


def encode_flat(entry: dict) -> str:
    """A flat object of strings, numbers, booleans and None as JSON, about three times as fast as json.dumps
    (which sets up an encoder for every call: a few µs, on every request's line); anything else is left to it."""
    parts = []
    for key, value in entry.items():
        if isinstance(value, str):
            encoded = QUOTE(value)
        elif value is None or isinstance(value, bool):
            encoded = "null" if value is None else "true" if value else "false"
        elif type(value) is int:
            encoded = repr(value)
        elif type(value) is float:
            encoded = repr(value) if math.isfinite(value) else "null"  # NaN is not JSON
        else:
            encoded = ENCODER.encode(value)
        parts.append(f"{QUOTE(key)}:{encoded}")
    return "{" + ",".join(parts) + "}"


class JsonFormatter(logging.Formatter):
    _second, _stamp = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {"time": f"{self._stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                 "logger": record.name}
        fields = getattr(record, "fields", None)
        if fields is not None:
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return encode_flat(entry)


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's logger (`logger_class`) writing its own lines (workers starting, timeouts, errors) as JSON.

    Set up again on every reload, so the formatter is put back each time. (gunicorn's `logconfig_dict`
    would also turn its access log on, one more line per request.)"""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(JsonFormatter())
