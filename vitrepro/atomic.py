"""Files written atomically: a temporary file in the same folder, then ``os.replace``. Used for everything
that processes sharing a results folder write or read at once (run records, ``runs.csv``, ``attempts.json``,
a resumed run's ``metrics.csv``, the reports' tables and figures): a reader never sees a torn file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def replace_into(path: Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then move it onto ``path`` (mode 0644);
    the temporary file is removed if ``write`` raises. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    return replace_into(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """``fig.savefig(path, dpi=dpi)``, atomically."""
    return replace_into(path, lambda tmp: fig.savefig(tmp, dpi=dpi))


__all__ = ["replace_into", "write_text", "save_figure"]
