"""Looking at a database file before SQLite is allowed to change it.

Contract: `foreign_reason(path, application_id)` says why the file at `path` must not be opened
as an Interlock database (not SQLite, another application's, tables but no Interlock schema),
or None. It reads the 100-byte SQLite header and, when that is inconclusive, the schema through
an `immutable` read-only connection: nothing is written, no `-wal`/`-shm` file is made. So an
Interlock store refuses a stranger's file before switching it to WAL. `readonly_uri(path)` is
the URI a read-only store opens: `immutable=1` as well when the directory is not writable (a
WAL database there cannot get its `-shm` file, and no writer can be at work in it either).
`describe_os_error` turns the errors of a full disk or a read-only place into a sentence, and
`describe` any error of opening, reading or writing the database (sqlite3's included).
`create_file` makes the database file 0600, and the directories it needs 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import stat
from pathlib import Path

_MAGIC = b"SQLite format 3\x00"
_OUR_TABLES = frozenset({"events", "runs"})
_NEARLY_FULL = 1 << 20  # bytes free under which an I/O error is taken for a full disk


def _immutable_uri(path: Path) -> str:
    return path.absolute().as_uri() + "?mode=ro&immutable=1"


def foreign_reason(path: Path, application_id: int) -> str | None:
    """Why `path` is not an Interlock database, or None (ours, empty, or not there)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # not there (or not reachable): the open that follows reports it
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else (
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        )
        return f"it is {kind}, not a database file"
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # the open that follows reports it
    if not header:
        return None  # an empty file: a new database
    if len(header) < 100 or not header.startswith(_MAGIC):
        return "the file is not a SQLite database (or is encrypted or corrupt)"
    user_version = int.from_bytes(header[60:64], "big")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id == application_id:
        return None
    if app_id != 0:
        return "it is an SQLite database of another application, not Interlock's"
    if Path(f"{path}-wal").exists():
        return None  # the header may be stale (not checkpointed): the schema check decides
    try:
        conn = sqlite3.connect(_immutable_uri(path), uri=True)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error:
        return "the file is not a SQLite database (or is encrypted or corrupt)"
    if not names and user_version == 0:
        return None  # an empty SQLite database: Interlock may make it its own
    if names >= _OUR_TABLES:
        return None
    return "it is an SQLite database but not an Interlock one (its tables are not Interlock's)"


def directory_writable(path: Path) -> bool:
    directory = path.absolute().parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        return not os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return False


def readonly_uri(path: Path) -> str:
    if directory_writable(path):
        return path.absolute().as_uri() + "?mode=ro"
    return _immutable_uri(path)


def describe_os_error(exc: BaseException, path: Path | None = None) -> str | None:
    """A sentence for a full disk or a read-only place, else None. SQLite reports a full disk
    as "disk I/O error" when growing its WAL index fails: the free space of `path`'s file
    system tells the two apart."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "database or disk is full" in str(exc):
        return "the disk is full"
    if path is not None and "disk I/O error" in str(exc):
        try:
            free = shutil.disk_usage(path.absolute().parent).free
        except OSError:
            return None
        if free < _NEARLY_FULL:
            return "the disk is full (SQLite reported a disk I/O error)"
    if code == errno.EROFS:
        return "the file system is read-only"
    return None


def describe(exc: BaseException, path: Path | None = None, *, busy_timeout: float = 12.0) -> str:
    """The problem behind `exc` in a few words (a full disk, a lock held too long, corruption)."""
    full = describe_os_error(exc, path)
    if full is not None:
        return full
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "disk is full" in text or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
            return "the disk is full"
        if "database is locked" in text or "database table is locked" in text:
            return (
                f"another process held the database's write lock for more than {busy_timeout:g} s"
            )
        if "disk I/O error" in text:
            return "a disk I/O error"
        if "not a database" in text:
            return "the file is not a SQLite database (or is encrypted or corrupt)"
        if "malformed" in text:
            return "the database file is corrupt (database disk image is malformed)"
        if "unable to open" in text:
            return "SQLite cannot open the file there"
        return text
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def create_file(path: Path) -> None:
    """Create the database file 0600 (and any missing parent directories 0700)."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    if path.is_dir():
        raise IsADirectoryError(21, "it is a directory")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
