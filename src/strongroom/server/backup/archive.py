"""The backup file: its members and their manifest, written into one tar beside the
backup's path and renamed into place when complete; read back with every check made
before a restore trusts it (its entries, its manifest, each member's checksum)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from ..._version import __version__

FORMAT: Final = "strongroom-backup"
FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
SQLITE_DATABASE: Final = "strongroom.sqlite"
SQLITE_ENGINE_STATE: Final = "strongroom.dbos.sqlite"
PG_DUMP: Final = "strongroom.pgdump"
MEMBERS: Final = {
    "sqlite": (SQLITE_DATABASE, SQLITE_ENGINE_STATE),
    "postgresql": (PG_DUMP,),
}
# Bounds on what a restore reads before it trusts anything: a manifest is a few hundred
# bytes, a backup a handful of members.
MAX_MANIFEST_BYTES: Final = 1024 * 1024
MAX_ARCHIVE_ENTRIES: Final = 8
CHUNK: Final = 1024 * 1024
SHA256: Final = re.compile(r"[0-9a-f]{64}")
# Row counts a manifest records and a restore compares: what an operator recognises.
COUNTED: Final = ("tenants", "secrets", "secret_versions", "api_keys", "executions")

# The processes that had the barrier open are those of the backed-up database, not of the
# restored one: a restore forgets them, or they would count as live a while (and hold a
# rekey back, or a second restore).
FORGET_HOLDERS: Final = "DELETE FROM barrier_holders"

# (what is being done, how much is done, of how much): pages, bytes or items, as the
# description says.
Progress = Callable[[str, int, int], None]


def no_progress(what: str, done: int, total: int) -> None:
    """Progress reported to nobody."""


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why and what to do."""


# -- the manifest ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """A file in the backup, as its manifest names it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a backup says of itself: written last into the archive, checked first."""

    backend: str  # "sqlite" or "postgresql"
    schema_revision: str
    created_at: dt.datetime
    members: tuple[Member, ...]
    counts: Mapping[str, int]
    strongroom_version: str = __version__
    format_version: int = FORMAT_VERSION
    tools: Mapping[str, str] = field(default_factory=dict)  # pg_dump's and the server's

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": self.format_version,
            "strongroom_version": self.strongroom_version,
            "schema_revision": self.schema_revision,
            "backend": self.backend,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "members": [
                {"name": m.name, "bytes": m.size, "sha256": m.sha256} for m in self.members
            ],
            "counts": dict(self.counts),
            "tools": dict(self.tools),
        }
        return json.dumps(document, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """The manifest ``raw`` holds, checked field by field; :class:`BackupError` names
        the first thing wrong."""
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackupError("the backup's manifest is not JSON: the file is damaged") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BackupError("not a strongroom backup (its manifest names another format)")
        version = doc.get("format_version")
        if not isinstance(version, int):
            raise BackupError("the backup's manifest has no format version: it is damaged")
        if version > FORMAT_VERSION:
            raise BackupError(
                f"the backup is in format {version}, made by strongroom "
                f"{doc.get('strongroom_version', '?')}; this strongroom ({__version__}) reads "
                f"format {FORMAT_VERSION} only: restore it with a newer strongroom"
            )
        try:
            backend = _text(doc, "backend")
            if backend not in MEMBERS:
                raise ValueError(f"unknown backend {backend!r}")
            members = tuple(
                Member(_text(m, "name"), _count(m, "bytes"), _sha256(m)) for m in doc["members"]
            )
            counts = {str(k): int(v) for k, v in dict(doc.get("counts", {})).items()}
            tools = {str(k): str(v) for k, v in dict(doc.get("tools", {})).items()}
            created = dt.datetime.fromisoformat(_text(doc, "created_at").replace("Z", "+00:00"))
            return cls(
                backend=backend,
                schema_revision=_text(doc, "schema_revision"),
                created_at=created,
                members=members,
                counts=counts,
                strongroom_version=_text(doc, "strongroom_version"),
                format_version=version,
                tools=tools,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"the backup's manifest is damaged: {exc}") from None

    def describe(self) -> str:
        when = self.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return (
            f"a {self.backend} backup made {when} by strongroom {self.strongroom_version} at "
            f"schema revision {self.schema_revision}: {describe_counts(self.counts)}"
        )


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a string")
    return value


def _sha256(doc: Mapping[str, Any]) -> str:
    value = _text(doc, "sha256")
    if not SHA256.fullmatch(value):
        raise ValueError("sha256 is not 64 hexadecimal digits")
    return value


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc[key]
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} is not a count")
    return value


def describe_counts(counts: Mapping[str, int]) -> str:
    def n(key: str, one: str, many: str) -> str:
        count = counts.get(key, 0)
        return f"{count} {one if count == 1 else many}"

    return (
        f"{n('tenants', 'tenant', 'tenants')}, {n('secrets', 'secret', 'secrets')} "
        f"({n('secret_versions', 'version', 'versions')}), "
        f"{n('api_keys', 'API key', 'API keys')}, "
        f"{n('executions', 'execution', 'executions')}"
    )


# -- what a database holds ------------------------------------------------------------------
@dataclass(frozen=True)
class Contents:
    """What a database holds, said before it is overwritten and checked after a restore."""

    where: str  # the database, without a password
    tables: int  # every table, strongroom's or not (the engine's included)
    revision: str | None
    counts: Mapping[str, int]

    @property
    def empty(self) -> bool:
        return self.tables == 0

    def describe(self) -> str:
        if self.empty:
            return f"{self.where} is empty"
        if self.revision is None:
            return f"{self.where} holds {self.tables} tables that are not strongroom's"
        return (
            f"{self.where} holds a strongroom database at schema revision {self.revision}: "
            f"{describe_counts(self.counts)}"
        )


def known_revision(revision: str) -> bool:
    """Whether this strongroom's migrations know ``revision`` (a newer one's do not)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from ..storage.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except CommandError:
        return False


def counts_of(tables: Sequence[str], count: Callable[[str], int]) -> dict[str, int]:
    """The row counts of :data:`COUNTED`'s tables among ``tables``, by ``count``."""
    return {name: count(name) for name in COUNTED if name in tables}


# -- files: the archive being written, members being staged -------------------------------
class BackupFile:
    """The backup file being written: temporary files beside ``path`` (mode 0600), the
    archive renamed to ``path`` only once complete, and every temporary file removed
    whatever happens."""

    def __init__(self, path: Path, *, force: bool) -> None:
        self.path = path
        self.force = force
        self.parent = path.absolute().parent
        self._temps: list[Path] = []
        if path.is_dir():
            raise BackupError(f"{path} is a directory: give the backup file's path")
        if path.exists() and not force:
            raise BackupError(f"{path} exists: give --force to replace it")
        if not self.parent.is_dir():
            raise BackupError(f"directory {self.parent} does not exist")

    def temp(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.parent, prefix=f".{self.path.name}.", suffix=suffix)
        os.close(fd)
        self._temps.append(Path(name))
        return Path(name)

    def discard(self, temp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()

    def publish(self, temp: Path) -> None:
        """Move the finished archive ``temp`` to the backup's path: replacing a file
        there only with ``force``, never half written under that name."""
        if self.force:
            os.replace(temp, self.path)
        else:
            try:
                # A link fails if the name was taken meanwhile, where a rename would not.
                os.link(temp, self.path)
            except FileExistsError:
                raise BackupError(f"{self.path} exists: give --force to replace it") from None
            except OSError:
                if self.path.exists():
                    raise BackupError(f"{self.path} exists: give --force to replace it") from None
                os.replace(temp, self.path)
        _fsync_directory(self.parent)

    def __enter__(self) -> BackupFile:
        return self

    def __exit__(self, *exc: object) -> None:
        for temp in self._temps:
            self.discard(temp)
            for suffix in ("-wal", "-shm", "-journal"):
                self.discard(Path(f"{temp}{suffix}"))


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem opens directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_space(directory: Path, needed: int, what: str) -> None:
    """Refuse, before anything is written, when ``directory`` has less than ``needed``
    bytes free."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise BackupError(
            f"{what} needs about {_size(needed)} free in {directory}, which has {_size(free)}: "
            "free some space or choose another place"
        )


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


class _Hashing:
    """A file read by tarfile, hashed and counted as it goes."""

    def __init__(self, file: IO[bytes], on_read: Callable[[int], None]) -> None:
        self.file = file
        self.digest = hashlib.sha256()
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.digest.update(chunk)
        self.on_read(len(chunk))
        return chunk


def write_archive(
    out: BackupFile,
    staged: Sequence[tuple[str, Path]],
    finish: Callable[[tuple[Member, ...]], Manifest],
    progress: Progress,
) -> tuple[Manifest, int]:
    """Write the staged members and then their manifest into a temporary archive, fsynced,
    and publish it; the manifest and the archive's size."""
    archive = out.temp(".partial")
    total = sum(path.stat().st_size for _, path in staged)
    done = 0
    members: list[Member] = []

    def advanced(n: int) -> None:
        nonlocal done
        done += n
        progress("writing the backup file (bytes)", done, total)

    with archive.open("wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, path in staged:
                info = _entry(name, path.stat().st_size)
                with path.open("rb") as source:
                    reader = _Hashing(source, advanced)
                    tar.addfile(info, reader)
                members.append(Member(name, info.size, reader.digest.hexdigest()))
                out.discard(path)  # the staged copy is in the archive: free its space now
            manifest = finish(tuple(members))
            body = manifest.to_json()
            tar.addfile(_entry(MANIFEST, len(body)), io.BytesIO(body))
        raw.flush()
        os.fsync(raw.fileno())
        size = raw.tell()
    out.publish(archive)
    return manifest, size


def _entry(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    return info


@dataclass
class Archive:
    """A backup opened for restore: its manifest checked against its members."""

    tar: tarfile.TarFile
    manifest: Manifest
    entries: dict[str, tarfile.TarInfo]

    def head(self, member: Member, size: int) -> bytes:
        """The first ``size`` bytes of ``member`` (unchecked: what to prepare for)."""
        source = self.tar.extractfile(self.entries[member.name])
        if source is None:
            raise BackupError(f"{member.name} in the backup is not a file")
        with source:
            return source.read(size)

    def extract(self, member: Member, target: Path, progress: Progress) -> None:
        """Copy ``member`` to ``target``, refusing it unless its bytes are those the
        manifest's checksum names (before anything is restored from it)."""
        source = self.tar.extractfile(self.entries[member.name])
        if source is None:
            raise BackupError(f"{member.name} in the backup is not a file")
        digest = hashlib.sha256()
        done = 0
        with source, target.open("wb") as sink:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                sink.write(chunk)
                done += len(chunk)
                progress(f"checking {member.name} (bytes)", done, member.size)
            sink.flush()
            os.fsync(sink.fileno())
        if done != member.size or digest.hexdigest() != member.sha256:
            raise BackupError(
                f"{member.name} in the backup does not match its checksum: the backup is "
                "damaged (or was altered); nothing was restored"
            )


@contextlib.contextmanager
def open_backup(path: Path) -> Iterator[Archive]:
    """The backup at ``path``, its manifest read and checked against its entries (names,
    types, sizes), its members' bytes not yet read."""
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{path} is not a strongroom backup (not a tar file: {exc})") from None
    try:
        entries: dict[str, tarfile.TarInfo] = {}
        try:
            while (info := tar.next()) is not None:
                if len(entries) >= MAX_ARCHIVE_ENTRIES or info.name in entries:
                    raise BackupError(f"{path} is not a strongroom backup (unexpected entries)")
                if not info.isreg():
                    raise BackupError(f"{path} is not a strongroom backup ({info.name!r})")
                entries[info.name] = info
        except tarfile.TarError as exc:
            raise BackupError(f"{path} is damaged: {exc}") from None
        found = entries.get(MANIFEST)
        if found is None or found.size > MAX_MANIFEST_BYTES:
            raise BackupError(f"{path} is not a strongroom backup (no manifest)")
        raw = tar.extractfile(found)
        assert raw is not None
        with raw:
            manifest = Manifest.from_json(raw.read(MAX_MANIFEST_BYTES))
        # The database's own member first, and always; the engine's state when it existed.
        required, *optional = MEMBERS[manifest.backend]
        named = {m.name for m in manifest.members}
        unexpected = named - {required, *optional}
        if len(named) != len(manifest.members) or required not in named or unexpected:
            raise BackupError("the backup's manifest names unexpected members: it is damaged")
        if set(entries) - {MANIFEST} != named:
            raise BackupError("the backup's members are not those its manifest names: damaged")
        for member in manifest.members:
            if entries[member.name].size != member.size:
                raise BackupError(f"{member.name} in the backup has the wrong size: damaged")
        yield Archive(tar, manifest, entries)
    finally:
        tar.close()


def check_restorable(manifest: Manifest, backend: str) -> None:
    """Refuse a backup of the other backend, or of a schema this code does not know."""
    if manifest.backend != backend:
        raise BackupError(
            f"this is a backup of a {manifest.backend} database and STRONGROOM_DATABASE_URL "
            f"names a {backend} one: restore it into a {manifest.backend} database"
        )
    if not known_revision(manifest.schema_revision):
        raise BackupError(
            f"the backup is at schema revision {manifest.schema_revision}, newer than this "
            f"strongroom ({__version__}) knows: restore it with strongroom "
            f"{manifest.strongroom_version} or newer"
        )


def refuse_overwrite(contents: Contents, force: bool) -> None:
    """Refuse to restore over a database that holds anything, unless ``force``: saying
    what it holds."""
    if not contents.empty and not force:
        raise BackupError(
            f"{contents.describe()}. A restore would replace all of it: give --force to "
            "overwrite it, or restore into an empty database"
        )
