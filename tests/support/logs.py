"""The app's log records, seen by pytest's caplog."""
import logging
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def captured(name: str, caplog) -> Iterator[None]:
    """caplog sees the logger's records once, whether or not "app" propagates them to the root logger.

    pytest adds its handler to loggers that do not propagate when a test phase starts; the app makes
    "app" one of them when it is first created, which may be in the middle of a phase (the first app a test
    process builds: which test that is depends on how the suite is spread over processes).
    """
    logger = logging.getLogger(name)
    direct = caplog.handler not in reached_handlers(logger)
    if direct:
        logger.addHandler(caplog.handler)
    try:
        yield
    finally:
        if direct:
            logger.removeHandler(caplog.handler)


def reached_handlers(logger: logging.Logger | None) -> list[logging.Handler]:
    found: list[logging.Handler] = []
    while logger is not None:
        found += logger.handlers
        logger = logger.parent if logger.propagate else None
    return found
