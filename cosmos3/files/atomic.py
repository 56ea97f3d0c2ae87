"""Write a file through a hidden temporary beside it and rename it at the end: a reader never sees half a file.

The temporary is ``.<stem>.<random>.partial<suffix>`` in the target's folder (same file system, so the rename
is atomic). It is removed when the write fails or is interrupted by an exception (``KeyboardInterrupt``, and
SIGTERM once the command line has turned it into an exception).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARKER = ".partial"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same extension); rename it onto ``path`` only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{PARTIAL_MARKER}{path.suffix}", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.close(fd)
        yield tmp_path
        if not tmp_path.is_file() or tmp_path.stat().st_size == 0:
            raise OSError(f"writing {path} produced no data")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the result normal file permissions
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def hide_temp_name(message: str, tmp: Path, path: Path) -> str:
    """``message`` with the hidden temporary's name replaced by the requested output path."""
    return message.replace(str(tmp), str(path)).replace(tmp.name, path.name)


def check_output_folder(path: Path) -> Path:
    """Refuse (``Cosmos3Error``) an output path whose folder is missing or read-only, or that is a folder itself."""
    from ..errors import Cosmos3Error

    path = Path(path)
    if path.is_dir():
        raise Cosmos3Error(f"output {path} is an existing folder; give a file name (e.g. {path / 'out.mp4'})")
    folder = path.parent
    if not folder.is_dir():
        raise Cosmos3Error(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Cosmos3Error(f"output folder {folder} is not writable")
    if path.exists() and not path.is_file():
        raise Cosmos3Error(f"output {path} exists and is not a regular file")
    return path
