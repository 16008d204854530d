"""Loading the master key from the environment or a file, and making a new one."""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from .envelope import KEY_BYTES, new_key


class MasterKeyError(Exception):
    """The master key is missing or malformed. Messages never include key material."""


def generate_master_key() -> str:
    """A new master key, base64-encoded as ``STRONGROOM_MASTER_KEY`` expects."""
    return base64.b64encode(new_key()).decode()


def decode_master_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{source} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"{source} must decode to {KEY_BYTES} bytes (it decodes to {len(key)}); "
            "make one with `strongroom master-key generate`"
        )
    return key


def load_master_key(value: str | None, file: Path | None) -> bytes:
    """The key from ``STRONGROOM_MASTER_KEY``, else from ``STRONGROOM_MASTER_KEY_FILE``."""
    if value:
        return decode_master_key(value, "STRONGROOM_MASTER_KEY")
    if file is not None:
        try:
            text = file.read_text()
        except OSError as exc:
            raise MasterKeyError(f"cannot read master key file {file}: {exc.strerror}") from None
        return decode_master_key(text, f"master key file {file}")
    raise MasterKeyError(
        "no master key: set STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE "
        "(or start with `strongroom serve --dev` to generate a development key)"
    )


def key_file_is_private(file: Path) -> bool:
    return stat.S_IMODE(file.stat().st_mode) & 0o077 == 0


def create_key_file(file: Path) -> bool:
    """Write a new key to ``file`` (mode 0600) unless it exists; True when written."""
    # A new directory is private too: the database beside the key needs no other readers.
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(generate_master_key() + "\n")
    return True
