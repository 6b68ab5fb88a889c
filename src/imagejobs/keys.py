"""The operator's encryption key: from settings, or a 0600 file created on first start."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path

from imagejobs.domain.errors import InvalidSettings
from imagejobs.iam.credentials import SecretBox
from imagejobs.settings import Settings
from imagejobs.storage.private_files import private_directory

logger = logging.getLogger("imagejobs.keys")


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSettings(where, "must be base64 of 32 bytes") from None
    if len(key) != 32:
        raise InvalidSettings(where, "must be base64 of 32 bytes")
    return key


def load_secret_box(settings: Settings, *, create: bool = False) -> SecretBox:
    """The SecretBox for the configured key; with ``create``, make the key file if missing."""
    if settings.encryption_key:
        return SecretBox(_decode(settings.encryption_key, "IMAGEJOBS_ENCRYPTION_KEY"))
    path = settings.key_file
    assert path is not None
    if not path.exists():
        if not create:
            raise InvalidSettings(
                "IMAGEJOBS_KEY_FILE", f"{path} does not exist (start `imagejobs serve` once)"
            )
        try:
            _create_key_file(path)
        except OSError as exc:
            raise _unusable(path, "cannot be created", exc) from None
    # A directory, a file of another user's, bytes that are no text: the key file's problem,
    # named as such (it read "cannot use the database: [Errno 21] Is a directory").
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _unusable(path, "cannot be read", exc) from None
    if mode & 0o077:
        logger.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    return SecretBox(_decode(text, "IMAGEJOBS_KEY_FILE"))


def _unusable(path: Path, what: str, exc: OSError | UnicodeDecodeError) -> InvalidSettings:
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not base64 text"
    return InvalidSettings("IMAGEJOBS_KEY_FILE", f"{path} {what} ({why})")


def _create_key_file(path: Path) -> None:
    private_directory(path.parent)
    text = base64.b64encode(SecretBox.generate_key()).decode() + "\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: use theirs
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    logger.info("created the operator key %s (mode 0600): back it up", path)
