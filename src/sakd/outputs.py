"""Files and folders a user names for sakd to write: checked before any work, written whole.

:func:`writable` and :func:`writable_folder` run when a command starts, so a target that cannot be
written is one line naming it and what is wrong (exit status 2) before minutes of work, not raw
OS text after them. Every file a run writes goes through :func:`written` (a temporary file beside
the target, flushed to disk, renamed over it: :func:`write_text`, :func:`write_bytes`, and the
checkpoints, figures and exported graphs) or :func:`append_text` (a line added to a log, taken
back whole if it cannot be): a failed write (a full disk, a read-only folder) is one
:class:`~sakd.errors.WriteError` naming the file and the OS's reason, and leaves an earlier file as
it was and nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from sakd.errors import ConfigError, WriteError


def reason(exc: BaseException) -> str:
    """The OS's words for a failed file operation ("No space left on device"), else the first line."""
    if getattr(exc, "strerror", None):
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_folder(folder: Path, what: str, target: Path) -> None:
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {what} {target}: {existing} is not writable")


def writable(path: str | Path, what: str) -> Path:
    """``path`` as a file sakd may write (its folder exists or can be made), or a ConfigError."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    _check_folder(path.parent, what, path)
    return path


def writable_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder sakd may make or write into, or a ConfigError."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder")
    _check_folder(path, what, path)
    return path


@contextlib.contextmanager
def written(path: str | Path, what: str) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; flushed to disk and renamed over
    ``path`` when the block ends, with ``path``'s permissions (a new file: what ``open`` gives it).
    Any failure (the block's or the disk's) removes it and leaves ``path`` as it was; one that the
    OS reports is a :class:`WriteError` naming ``path`` and the reason."""
    path = Path(path).expanduser()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to open()
        tmp = name  # made: removed again on any failure
        if path.exists():
            os.fchmod(fd, path.stat().st_mode & 0o7777)
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise WriteError(f"cannot write {what} {path}: {reason(exc)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, what: str) -> Path:
    """Write ``data`` to ``path`` whole (:func:`written`)."""
    with written(path, what) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path).expanduser()


def write_text(path: str | Path, text: str, what: str) -> Path:
    """Write ``text`` to ``path`` whole (:func:`written`), after checking the place (a ConfigError)."""
    return write_bytes(writable(path, what), text.encode("utf-8"), what)


def append_text(path: str | Path, text: str, what: str) -> None:
    """Add ``text`` to the end of ``path`` (a log's line), on disk when this returns; a failed write
    takes the file back to what it held and is a :class:`WriteError` naming it (unbuffered: nothing
    is left to flush later)."""
    path = Path(path)
    data, fd = text.encode("utf-8"), None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    except OSError as exc:
        raise WriteError(f"cannot write {what} {path}: {reason(exc)}") from None
    finally:
        if fd is not None:
            os.close(fd)
