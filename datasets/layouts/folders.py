"""Folder listing shared by the layouts: visible entries and files by stem."""

from __future__ import annotations

from pathlib import Path

__all__ = ["visible_children", "files_by_stem"]


def visible_children(folder: Path) -> list[Path]:
    """The entries of ``folder`` not starting with ``.``, sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def files_by_stem(folder: Path, ext: str, suffix: str = "") -> dict[str, Path]:
    """Files of ``folder`` with extension ``ext`` (any case) by stem, the stem's ``suffix`` (e.g. ``_mask``) removed."""
    files = [p for p in visible_children(folder) if p.is_file() and p.suffix.lower() == ext]
    return {p.stem.removesuffix(suffix): p for p in files if p.stem.endswith(suffix)}
