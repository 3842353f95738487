"""Where the shipped data folders (config/, models/, launch/) are found.

From a source checkout they sit at the repository root; after ``pip install ./codi_ros`` or a
colcon build they are installed into ``<prefix>/share/codi_ros/``. ``CODI_SHARE`` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE = "codi_ros"


def share_dir() -> Path:
    """The folder holding ``config/`` and ``models/``."""
    env = os.environ.get("CODI_SHARE")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    if (repo_root / "config" / "world.yaml").is_file():
        return repo_root
    for prefix in (sys.prefix, sys.base_prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = Path(prefix) / "share" / _PACKAGE
        if (candidate / "config" / "world.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "cannot find codi_ros's config/ folder: run from a source checkout, install with "
        "`pip install ./codi_ros`, or set CODI_SHARE to the folder that holds config/ and models/")


def config_dir() -> Path:
    return share_dir() / "config"


def models_dir() -> Path:
    return share_dir() / "models"


def writable_folder(folder: Path) -> str | None:
    """Create ``folder`` if needed and check that a file can be written in it: None, or why not. Checked
    before a long job, so that its results are not lost on the final write."""
    probe = Path(folder) / f".codi_write_test_{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"cannot write to {folder}: {e.strerror or e}"
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it: a crash mid-write leaves the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
