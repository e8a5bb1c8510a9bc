"""Run logging: a detailed ``run.log`` in the results folder and concise lines on the console."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

LOGGER_NAME = "breastclip.run"


@contextmanager
def run_logging(log_file: Path, *, console: bool = True, console_level: int = logging.INFO):
    """Attach a file handler (DEBUG) and, optionally, a rich console handler (INFO) for the run's duration."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(log_file, encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handlers: list[logging.Handler] = [fh]
    if console:
        from rich.logging import RichHandler

        ch = RichHandler(show_time=False, show_path=False, markup=False, rich_tracebacks=False)
        ch.setLevel(console_level)
        ch.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(ch)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
