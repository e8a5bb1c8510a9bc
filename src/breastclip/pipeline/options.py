"""Pass a config's free-form ``options`` tables to library functions, rejecting keys they do not take."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from breastclip.config import ConfigError


def accepted_keywords(fn: Callable) -> set[str] | None:
    """Keyword names ``fn`` accepts; None when it takes ``**kwargs`` (anything goes)."""
    sig = inspect.signature(fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def check_options(fn: Callable, options: dict[str, Any], where: str, *, fixed: tuple[str, ...] = ()) -> dict:
    """``options`` unchanged when ``fn`` accepts every key, else a :class:`ConfigError` naming the valid keys."""
    valid = accepted_keywords(fn)
    if valid is None:
        return dict(options)
    valid -= set(fixed)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; {getattr(fn, '__qualname__', fn)} accepts: "
                          f"{', '.join(sorted(valid)) or '(none)'}")
    return dict(options)


def split_options(options: dict[str, Any], *fns: Callable, where: str) -> list[dict]:
    """Distribute ``options`` over several functions by their keyword names; a key none takes is an error."""
    parts: list[dict] = [{} for _ in fns]
    unknown = []
    for key, value in options.items():
        for i, fn in enumerate(fns):
            valid = accepted_keywords(fn)
            if valid is None or key in valid:
                parts[i][key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        names = sorted(set().union(*[(accepted_keywords(f) or set()) for f in fns]))
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid: {', '.join(names)}")
    return parts
