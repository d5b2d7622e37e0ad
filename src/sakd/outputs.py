"""Files and folders a user names for sakd to write: checked before any work, written whole.

:func:`writable` and :func:`writable_folder` run when a command starts, so a target that cannot be
written is one line naming it and what is wrong (exit status 2) before minutes of work, not raw
OS text after them; :func:`write_text` writes through a temporary file beside the target and
renames it over, so a failed write leaves an earlier file as it was and nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from sakd.errors import ConfigError


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


def write_text(path: str | Path, text: str, what: str) -> Path:
    """Write ``text`` to ``path`` whole (a temporary file renamed over it), or a ConfigError."""
    path = writable(path, what)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    return path
