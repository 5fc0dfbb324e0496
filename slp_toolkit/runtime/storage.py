"""Writing model directories: every save of a model or processor goes through :func:`save_pretrained`."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def save_pretrained(path: str | Path, *parts) -> Path:
    """``part.save_pretrained(path)`` for each part that is not None, then give the files the modes the
    umask asks for. safetensors (0.7) writes weights through a private temp file, leaving
    ``model.safetensors`` at 0600: a model dir shared with a group, another user or a container (the demo,
    a Hub push from CI) could then read the config but not the weights."""
    path = Path(path)
    for part in parts:
        if part is not None:
            part.save_pretrained(path)
    share(path)
    return path


def share(path: str | Path) -> None:
    """Files under ``path`` get mode 0666 minus the umask (what a plain open() would have given them)."""
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for file in Path(path).rglob("*"):
        if file.is_file() and not file.is_symlink() and (file.stat().st_mode & 0o777) != mode:
            file.chmod(mode)


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS)


def disk_error(err: Exception) -> int | None:
    """The errno of a write that failed for want of space or permission, else None.

    pyarrow's and safetensors' write errors carry the errno only in their text."""
    code = getattr(err, "errno", None)
    if code in DISK_ERRORS:
        return code
    return next((c for c in DISK_ERRORS if os.strerror(c) in str(err)), None)
