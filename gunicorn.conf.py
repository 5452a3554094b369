"""gunicorn settings for every environment; override with the environment variables named here.

They are read after `.env` (see config.py), so `PORT=3901` there is honoured; the real environment wins."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from config import load_env_file  # noqa: E402

load_env_file()

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3000')}"
# gthread: a slow upload or download holds one thread, never the whole worker or its heartbeat.
# Its subclass answers gunicorn's own refusals (URL or headers too long) as JSON, like every other error.
worker_class = "app.gunicorn_worker.JsonErrorWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No runtime control socket: several instances on one host would fight over its default path.
control_socket_disable = True
