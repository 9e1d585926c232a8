"""Atomic file writes: a reader (or a rerun after a kill) never sees half a file.

Write to a temporary file in the same directory, fsync, then `os.replace` onto the final name.
The file gets the permissions `open()` would give it (0666 minus the umask), not mkstemp's 0600:
checkpoints, records and figures are read by other jobs and by colleagues on a shared cluster.
`share_files` gives files written by other libraries (safetensors writes 0600 too) that mode.
`check_writable_dir` tells at a command's start, in one line, that its output could not be written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from intdim.errors import UserError


def _current_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import (single-threaded).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def share_files(folder: str | Path) -> None:
    """Give every file under `folder` FILE_MODE (0666 minus the umask). safetensors' save_file
    (and so transformers' save_pretrained) writes model.safetensors through a 0600 temporary
    file, which a colleague's job on a shared cluster could not read."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, FILE_MODE)


def check_writable_dir(path: str | Path, what: str, hint: str) -> None:
    """Raise a one-line UserError unless `path` is a directory this process can write into, or
    one it could create. Nothing is created: a command checks its output before any work and
    leaves nothing behind when something else then fails. `what` names the path in the message
    ("--out", "run_dir"); `hint` says what to do instead."""
    p = Path(path).expanduser().absolute()
    target = p
    while not target.exists() and not target.is_symlink() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        where = f"{what} {path}" if target == p else f"{what} {path} cannot be created: {target}"
        raise UserError(f"{where} is a file, not a directory; {hint}")
    if not os.access(target, os.W_OK | os.X_OK):
        where = "" if target == p else f" ({target} is where it would be created)"
        raise UserError(f"{what} {path} is not writable{where}; {hint}")
