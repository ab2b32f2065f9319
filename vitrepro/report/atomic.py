"""Report files written atomically (a temporary file in the same folder, then ``os.replace``): job-array
tasks sharing a results folder each redraw the same table and figure, and a reader never sees a torn one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _replace_into(path: Path, write) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path: Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return _replace_into(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """``fig.savefig(path, dpi=dpi)``, atomically."""
    return _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
