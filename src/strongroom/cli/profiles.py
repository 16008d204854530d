"""Saved logins: the server and API key of each profile, in the user's config file.

``$XDG_CONFIG_HOME/strongroom/config.toml`` (``~/.config/strongroom/config.toml`` when the
variable is unset), one TOML table per profile::

    [profiles.default]
    base_url = "https://strongroom.internal:8000"
    api_key = "sr_..."

The file holds API keys, so it is kept as ssh keeps a private key: written 0600 (in a
0700 directory), atomically, and refused when read if anyone but its owner may read it or
it belongs to another user. Written by the small TOML writer below (the standard library
only reads TOML); what it does not know how to write it does not drop: it refuses.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(Exception):
    """The config file cannot be used as it is; the message says why and what to do."""


@dataclass(frozen=True)
class Profile:
    base_url: str
    api_key: str = field(repr=False)


def config_path() -> Path:
    """Where profiles are kept. A relative ``XDG_CONFIG_HOME`` is ignored, as the XDG
    specification says."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "strongroom" / "config.toml"


def profile_name_problem(name: str) -> str | None:
    if PROFILE_NAME.fullmatch(name):
        return None
    return f"{name!r} is not a profile name: 1 to 64 letters, digits, '_' or '-'"


# -- reading ----------------------------------------------------------------------------------
def read_config(path: Path) -> dict[str, Any]:
    """The file's TOML ({} when there is no file), refused unless it is private to us."""
    try:
        # O_NONBLOCK: a FIFO put there opens at once (and is refused) instead of hanging.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        _check_private(path, os.fstat(stream.fileno()))
        raw = stream.read()
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} belongs to another user (uid {info.st_uid}): it holds API keys, so "
            "only a file of your own is used"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): it "
            f"holds API keys, so it is not used until only you can read it: chmod 600 {path}"
        )


def _profiles(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    found = data.get("profiles", {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: 'profiles' must be a table ([profiles.NAME])")
    return found


def load_profile(name: str, path: Path | None = None) -> Profile | None:
    """Profile ``name``, or None when the file (or the profile) does not exist."""
    path = path or config_path()
    table = _profiles(read_config(path), path).get(name)
    if table is None:
        return None
    base_url = table.get("base_url") if isinstance(table, dict) else None
    api_key = table.get("api_key") if isinstance(table, dict) else None
    if not (isinstance(base_url, str) and base_url and isinstance(api_key, str) and api_key):
        raise ConfigError(
            f"{path}: [profiles.{name}] needs base_url and api_key, as text "
            f"(`strongroom login --profile {name}` writes them)"
        )
    return Profile(base_url, api_key)


# -- writing ----------------------------------------------------------------------------------
def save_profile(name: str, profile: Profile, path: Path | None = None) -> Path:
    """Store ``profile`` as ``name`` (other profiles, and other keys of this one, kept)."""
    path = path or config_path()
    data = read_config(path)
    profiles = _profiles(data, path)
    data["profiles"] = profiles
    previous = profiles.get(name)
    kept = previous if isinstance(previous, dict) else {}
    profiles[name] = {**kept, "base_url": profile.base_url, "api_key": profile.api_key}
    write_private(path, dump(data))
    return path


def remove_profile(name: str, path: Path | None = None) -> bool:
    """Forget profile ``name``; False when there was none. A file left with nothing in it
    is removed."""
    path = path or config_path()
    data = read_config(path)
    profiles = _profiles(data, path)
    if name not in profiles:
        return False
    del profiles[name]
    if not profiles:
        del data["profiles"]
    if data:
        write_private(path, dump(data))
    else:
        path.unlink()
    return True


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner alone from the first byte: a
    0600 temporary file beside it (``mkstemp``), synced, then renamed over it. The
    directory is made 0700, or narrowed to it."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(directory.stat().st_mode) & 0o077:
            directory.chmod(0o700)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable; a file system that cannot sync a directory is left be."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- a TOML writer: what tomllib reads, written back -----------------------------------------
def dump(data: Mapping[str, Any]) -> str:
    """``data`` (as :func:`tomllib.loads` returns it) as TOML that reads back equal."""
    lines: list[str] = []
    _table(lines, (), data)
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    values = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    if path and (values or not tables):
        lines.append(f"[{'.'.join(_key(part) for part in path)}]")
    lines.extend(f"{_key(key)} = {_value(value)}" for key, value in values)
    if values or path:
        lines.append("")
    for key, value in tables:
        _table(lines, (*path, key), value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise ConfigError("text that is not valid Unicode cannot be written to TOML")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{" + (f" {inner} " if inner else "") + "}"
    raise ConfigError(f"cannot write a {type(value).__name__} to TOML")
