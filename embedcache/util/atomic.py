"""All-or-nothing file and directory writes: written under a temporary name beside the target,
then renamed into place (a rename within one directory is atomic on POSIX file systems)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["replace_directory", "write_atomically"]


def write_atomically(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary name beside ``path``, then rename it into place;
    on any failure (Ctrl-C included) nothing is left. Returns ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replace_directory(staging: Path, target: Path) -> None:
    """Move the complete ``staging`` directory to ``target`` (same parent), replacing an earlier
    one: the old one is first renamed aside, so ``target`` is always whole, old or new."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, retired / target.name)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
