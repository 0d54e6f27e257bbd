"""Where the front ends look for things: the database and the pipelines folder.

The database is `--db PATH`, else `$INTERLOCK_DB`, else `interlock.db` in the user data
directory (platformdirs; `~/.local/share/interlock` on Linux). Pipelines are `--pipelines DIR`,
else `./pipelines` when the current directory has one, else the bundled `pipelines/` of this
checkout, else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def default_db_path() -> Path:
    env = os.environ.get("INTERLOCK_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("interlock", appauthor=False)) / "interlock.db"


def default_pipelines_dir() -> Path:
    here = Path.cwd() / "pipelines"
    if here.is_dir():
        return here
    if BUNDLED_PIPELINES.is_dir():
        return BUNDLED_PIPELINES
    return Path.cwd()


def pipeline_files(directory: Path) -> list[Path]:
    """Pipeline files in `directory` (not recursive), sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
    )
