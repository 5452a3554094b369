"""LOG_FORMAT=json: each log record as one JSON object on one line, for the app's loggers and gunicorn's.

A request's line carries its fields (`request_id`, `method`, `path`, `status`, `duration_ms`, `user_id`) at
the top level; any other record has `message`, and a traceback under `exception`. json.dumps escapes
every control character and, with ensure_ascii, every line break a log reader might split on, so no
input can start a line of its own. Loaded by gunicorn's master too, which has no app.
"""
import json
import logging
import time

from gunicorn import glogging

FORMATS = ("text", "json")


def check(log_format: str) -> str:
    if log_format not in FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    return log_format


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's logger (`logger_class`) writing its own lines (workers starting, timeouts, errors) as JSON.

    Set up again on every reload, so the formatter is put back each time. (gunicorn's `logconfig_dict`
    would also turn its access log on, one more line per request.)"""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(JsonFormatter())
