"""Atomic file writes, the one helper for the whole package.

Every write goes to a UNIQUE temporary file in the destination folder (``tempfile.mkstemp``: two processes writing
the same target never share a temporary name), is fsynced, gets the permissions the umask gives an ordinary file
(mkstemp creates 0600 files), and is renamed over the target with ``os.replace``: readers see the old file or the
new one, never half of one, and an interrupted write leaves at most a hidden ``.NAME.XXXX.tmp`` behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "umask_mode", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


def umask_mode(base: int = 0o666) -> int:
    """The mode ``open()`` would give a new file under the current umask.

    Read from ``/proc/self/status`` where it exists, since setting the umask to read it (the portable way) briefly
    changes it for every thread of the process.
    """
    mask = None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    mask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError):
        pass
    if mask is None:
        mask = os.umask(0o22)
        os.umask(mask)
    return base & ~mask


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems cannot fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on success move it over ``path`` atomically.

    For writers that need a file name rather than bytes (``safetensors.save_file``, ``PIL.Image.save``). On any
    error the temporary file is removed and the target is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _finish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _finish(tmp: Path, target: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, umask_mode())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _write(path: str | os.PathLike[str], write: Callable[[int], None]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        write(fd)
        os.fchmod(fd, umask_mode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (unique temp file, fsync, umask permissions, rename)."""
    view = memoryview(data)

    def write(fd: int) -> None:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])

    return _write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))
