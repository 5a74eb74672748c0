"""Owner-only, all-or-nothing file writes and hashing."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

PRIVATE_FILE = 0o600


def temp_prefix(target: Path, pid: int | None = None) -> str:
    """The name every temporary file of ``target`` written by process ``pid`` starts with,
    so the temporary files of a killed process can be found and removed later."""
    return f".{target.name}.{os.getpid() if pid is None else pid}."


def remove_temp_files(target: Path, pid: int) -> list[Path]:
    """Remove the temporary files a (dead) process ``pid`` left beside ``target``."""
    removed = []
    with contextlib.suppress(OSError):
        for path in target.parent.glob(f"{glob.escape(temp_prefix(target, pid))}*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], before_replace: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The temporary file is created owner-only (0600). If the block raises, the temporary
    file is removed and ``target`` is left exactly as it was: no partial output. The
    folder must exist (a mistyped folder is not created). ``before_replace`` runs once the
    temporary file is complete and on disk, just before the rename: a triage marks its run
    complete there, so an output never exists for a run the store does not call complete.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, PRIVATE_FILE)
    try:
        yield tmp_path
        os.chmod(tmp_path, PRIVATE_FILE)
        _fsync(tmp_path)
        if before_replace is not None:
            before_replace()
        os.replace(tmp_path, target)
        _fsync(target.parent)  # the rename itself survives a power loss
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically, owner-only."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
