"""The directory where each worker process writes its metrics (prometheus-client's multi-process mode).

Made by gunicorn's master before any worker starts, and emptied then: numbers a previous server left
there would be added to this one's. It is per address the server listens on, so two servers on one host
(each on its own port) never mix their numbers. prometheus-client decides on import whether it runs in this
mode, so nothing here imports it before the variable is set.
"""
import os
import re
import shutil
import sys
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The environ key the worker sets on a request that came in on the loopback metrics port (METRICS_PORT).
METRICS_LISTENER = "filesvc.metrics_listener"


def metrics_wanted() -> bool:
    return bool(os.environ.get("METRICS_TOKEN") or os.environ.get("METRICS_PORT"))


def prepare(instance_dir: str, bind: str) -> Path | None:
    """Set PROMETHEUS_MULTIPROC_DIR to an empty directory of this server's; None when metrics are off."""
    if not metrics_wanted():
        os.environ.pop(VARIABLE, None)
        return None
    directory = Path(instance_dir) / "metrics" / re.sub(r"[^A-Za-z0-9.-]+", "_", bind)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[VARIABLE] = str(directory)
    return directory


def flush_before_exit() -> None:
    """In a stopping worker: write the last second's counts (app.metrics writes them once a second)."""
    counted = sys.modules.get("app.metrics")
    if counted is not None and os.environ.get(VARIABLE):
        counted.flush()


def worker_exited(pid: int) -> None:
    """A stopped worker's gauges (transfers in flight, connections in use) must not count any more; its
    counters stay, so that totals never go down."""
    if os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove(directory: str | None) -> None:
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
