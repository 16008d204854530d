"""Loading the master key from the environment or a file, naming it, and making a new one.

A key file holds one key, or two (one a line) while a rekey rolls a new key out: the
process holds every key of its file that opens the barrier (see :mod:`.barrier`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .envelope import KEY_BYTES, new_key

# A file holds the current master key and, during a rekey, the incoming one.
MAX_KEYS_PER_FILE = 2


class MasterKeyError(Exception):
    """The master key is missing or malformed. Messages never include key material."""


def generate_master_key() -> str:
    """A new master key, base64-encoded as ``STRONGROOM_MASTER_KEY`` expects."""
    return encode_master_key(new_key())


def encode_master_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def key_id(key: bytes) -> str:
    """A master key's name, safe to store, log and print: 16 hex digits of a
    domain-separated SHA-256 of it. The key is 256 random bits, so its id tells nothing
    about it; the prefix keeps the id from equalling any other digest of the key."""
    return hashlib.sha256(b"strongroom|master-key-id|v1|" + key).hexdigest()[:16]


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
    """The key from ``STRONGROOM_MASTER_KEY``, else from ``STRONGROOM_MASTER_KEY_FILE``
    (its first key, when it holds two)."""
    return load_master_keys(value, file)[0]


def load_master_keys(value: str | None, file: Path | None) -> list[bytes]:
    """The keys a process is configured with: ``STRONGROOM_MASTER_KEY``'s one, else
    those of ``STRONGROOM_MASTER_KEY_FILE`` (one or two)."""
    if value:
        return [decode_master_key(value, "STRONGROOM_MASTER_KEY")]
    if file is not None:
        return read_key_file(file)
    raise MasterKeyError(
        "no master key: set STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE "
        "(or start with `strongroom serve --dev` to generate a development key)"
    )


def read_key_file(file: Path) -> list[bytes]:
    """The keys of a key file: one base64 key a line (blank lines ignored), at most two."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {file}: {exc.strerror}") from None
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    if len(lines) > MAX_KEYS_PER_FILE:
        raise MasterKeyError(
            f"master key file {file} holds {len(lines)} lines; it holds one key, or two "
            "(the current and the incoming one) during a rekey"
        )
    if len(lines) == 1:
        return [decode_master_key(lines[0], f"master key file {file}")]
    keys: list[bytes] = []
    for number, line in enumerate(lines, 1):
        key = decode_master_key(line, f"master key file {file} (line {number})")
        if key not in keys:
            keys.append(key)
    return keys


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


def write_key_file(file: Path, keys: Sequence[bytes]) -> None:
    """Replace ``file`` with ``keys`` (one a line, mode 0600), durably and atomically.

    A temporary file beside it is written and fsynced, renamed over ``file``, and the
    directory fsynced: a crash leaves the old file or the new one whole, and once this
    returns the new one survives a power loss. A rekey relies on that: no database row
    may depend on a key that could still be lost.
    """
    if not 1 <= len(keys) <= MAX_KEYS_PER_FILE:
        raise ValueError(f"a key file holds 1 or {MAX_KEYS_PER_FILE} keys, not {len(keys)}")
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = file.with_name(file.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a temporary file left by a crash keeps its old mode
        os.write(fd, "".join(encode_master_key(key) + "\n" for key in keys).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, file)
    sync_directory(file.parent)


def remove_key_file(file: Path) -> None:
    """Delete ``file`` if it is there, durably."""
    with contextlib.suppress(FileNotFoundError):
        file.unlink()
        sync_directory(file.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
