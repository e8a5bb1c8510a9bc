"""Known errors end in one line (file, problem, fix) and exit code 2; a traceback only with ``--debug``.

"Known" means: an error breastclip raised itself (any exception whose innermost frame is in the package: every
message there names the file and the fix), an operating-system error on a named file (a read-only output or cache
folder, a full disk), or a damaged safetensors file. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import NoReturn

import click
import typer
from typer.core import TyperGroup

PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
DEBUG_KEY = "breastclip.debug"
DEBUG_ENV = "BREASTCLIP_DEBUG"
EXIT_CODE = 2

_OS_FIXES = {
    errno.EACCES: "choose a folder you can write to (--output, or BREASTCLIP_CACHE for the cache) or fix its "
                  "permissions",
    errno.EPERM: "choose a folder you can write to (--output, or BREASTCLIP_CACHE for the cache) or fix its "
                 "permissions",
    errno.EROFS: "the file system is read-only: choose another folder (--output, or BREASTCLIP_CACHE for the cache)",
    errno.ENOSPC: "free some disk space or choose a folder on another disk",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a file stands where a folder is expected: check the path",
    errno.EISDIR: "a folder stands where a file is expected: check the path",
}


def _raised_in_package(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(PACKAGE_DIR)


def _safetensors_error(exc: BaseException) -> bool:
    return type(exc).__name__ == "SafetensorError"


def describe(exc: BaseException) -> str | None:
    """The one-line message for a known error, or None for an unexpected one (a bug: keep the traceback)."""
    if isinstance(exc, OSError) and (exc.filename or exc.errno in _OS_FIXES):
        where = f"{exc.filename}: " if exc.filename else ""
        problem = exc.strerror or str(exc)
        fix = _OS_FIXES.get(exc.errno or -1, "check the path and its permissions")
        return f"{where}{problem}; {fix}"
    if _safetensors_error(exc):
        return (f"a .safetensors file is damaged or not a safetensors file ({exc}); restore it, or run the step that "
                f"writes it again")
    if isinstance(exc, (ValueError, RuntimeError, KeyError, LookupError, OSError)) and _raised_in_package(exc):
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return str(text)
    if type(exc).__module__.startswith("breastclip.") and isinstance(exc, Exception):
        return str(exc)
    return None


_DEBUG: ContextVar[bool] = ContextVar(DEBUG_KEY, default=False)


def debug_enabled() -> bool:
    """``--debug`` given to this invocation (or ``BREASTCLIP_DEBUG=1`` in the environment)."""
    return _DEBUG.get() or os.environ.get(DEBUG_ENV, "").lower() in {"1", "true", "yes"}


def hide_flag_types() -> None:
    """On/off flags take no value: show no ``<bool>`` type beside them in --help.

    typer 0.25+ prints the annotation's type for every option, flags included, and offers no setting to turn it off
    for flags; this wraps its one display hook (kept idempotent, and a no-op on typer versions without the hook).
    """
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_breastclip_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    display_type_rich._breastclip_flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


class ErrorHandlingGroup(TyperGroup):
    """The top-level command group: turns known errors into one line and exit code 2 (``--debug``: traceback)."""

    def invoke(self, ctx):  # untyped: typer vendors its own click.Context type, which click.Context is not
        token = _DEBUG.set(False)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            message = describe(exc)
            if message is None or debug_enabled():
                raise
            typer.secho(f"error: {message} (breastclip --debug ... shows the traceback)", fg=typer.colors.RED,
                        err=True)
            raise typer.Exit(EXIT_CODE) from exc
        finally:
            _DEBUG.reset(token)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` and exit 2; under ``--debug``, re-raise the exception being handled instead."""
    if sys.exc_info()[1] is not None and debug_enabled():
        raise  # called from an except block: the active exception, with its traceback
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_CODE)


def debug_option(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error.")) -> None:
    """Breast lesion classification with vision-language models. Research use only, not for diagnosis."""
    _DEBUG.set(debug)
