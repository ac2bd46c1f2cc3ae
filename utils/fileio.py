"""Atomic file writing for run artefacts (``results.json``, ``results.md``, anomaly-map pictures).

A reader (or a crash) never sees a half-written file: the content goes to a temporary file in the
same folder, is flushed and fsync-ed, then renamed over the target with :func:`os.replace`, which is
atomic on POSIX and Windows when both paths are on the same file system.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "file_digest", "to_jsonable"]


def _fsync_dir(folder: Path) -> None:
    """Flush a folder entry to disk so that a rename survives a power loss (POSIX only)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folders if needed.

    The temporary file ``.<name>.<random>.tmp`` lives beside the target and is removed if anything
    fails; an existing file at ``path`` stays untouched until the final rename. The new file gets
    the usual permissions (``0o666`` minus the umask).

    Args:
        path: destination file.
        data: the complete new content.

    Returns:
        The destination as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Args:
        path: destination file.
        text: the complete new content.
        encoding: text encoding.

    Returns:
        The destination as a :class:`~pathlib.Path`.
    """
    return atomic_write_bytes(path, text.encode(encoding))


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types.

    numpy scalars and arrays become Python numbers and lists, tuples become lists, and NaN floats
    become ``None`` (JSON has no NaN; ``None`` is how the results files spell "undefined").
    Infinite floats raise, as they always indicate a bug upstream.

    Args:
        obj: nested dicts / lists / tuples of numbers, strings, booleans, ``None`` and numpy values.

    Returns:
        A structure that :func:`json.dumps` accepts with ``allow_nan=False``.

    Raises:
        ValueError: an infinite float, or a dict key that is not a string.
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"JSON object keys must be str, found {type(key).__name__} key {key!r}")
            out[key] = to_jsonable(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            raise ValueError(f"cannot write an infinite float ({obj}) to JSON")
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically, after :func:`to_jsonable`.

    Args:
        path: destination file.
        obj: the object to serialise.
        indent: JSON indentation.

    Returns:
        The destination as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``obj`` holds a value JSON cannot represent (nothing is written then).
        ValueError: see :func:`to_jsonable` (nothing is written then).
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes with a :mod:`hashlib` algorithm (``"sha1"``, ``"sha256"``), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
