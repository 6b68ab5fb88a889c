"""Where secrets rest on disk: the SQLite database (password hashes, token digests, every
tenant's data) with its -wal and -shm, in directories only their owner may enter, 0600 and
0700 whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
# What SQLite keeps beside a database: the write-ahead log, its shared-memory index, the
# rollback journal. It creates each with the database file's mode.
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

logger = logging.getLogger("imagejobs.storage")


def private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents 0700; directories that exist stay as they are
    (a database may well live in someone else's directory)."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIRECTORY_MODE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(directory, PRIVATE_DIRECTORY_MODE)  # mkdir's mode went through the umask


def close_data_directory(path: Path) -> None:
    """The data directory is imagejobs' own: when it exists open to other users (earlier
    versions made it 0755), close it. Not when it is sticky, as /tmp is, or someone else's.
    A data directory that does not exist yet is made 0700 by whatever first writes in it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and not mode & stat.S_ISVTX and info.st_uid == os.getuid():
        os.chmod(path, mode & PRIVATE_DIRECTORY_MODE)
        logger.warning("%s was open to other users (mode %o): now %o", path, mode, mode & 0o700)


def private_sqlite_database(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so that its -wal and -shm follow,
    and close an existing database's files to other users."""
    private_directory(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # whatever the umask took away
        os.close(descriptor)  # an empty file is an empty SQLite database
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_COMPANIONS)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            try:
                os.chmod(file, mode & PRIVATE_FILE_MODE)
            except PermissionError:  # not ours to change: say so, and carry on
                logger.warning("%s is open to other users (mode %o); chmod 600 it", file, mode)
