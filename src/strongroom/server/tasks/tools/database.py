"""``database``/``query``: one SQL statement on PostgreSQL (psycopg 3) or SQLite.

Arguments:

- ``query``: one statement. Several statements in one string are refused by both
  databases (PostgreSQL runs it over the extended protocol). Without one the step checks
  the connection (``SELECT 1``): the product guide's step that names only a
  ``secret_name`` is such a check.
- ``params``: bound parameters, never formatted into the text: a list for positional
  placeholders, an object for named ones. Placeholders are the driver's own: ``%s`` and
  ``%(name)s`` on PostgreSQL (a literal ``%`` is then written ``%%``), ``?`` and ``:name``
  on SQLite. Objects in ``params`` go as JSON (``jsonb`` on PostgreSQL, text on SQLite).
- ``connection``: where to connect, either ``{"host", "port", "user", "password",
  "database", "sslmode"}`` (``host`` and ``user`` required, ``port`` 5432 and ``database``
  the user's name by default; each may be a ``$ secrets.…`` expression, and ``port`` may be
  a string of digits) or ``{"url": …}`` with a ``postgresql://`` / ``postgres://`` URL
  (one host, only the ``sslmode`` query parameter) or ``sqlite:///path``. ``password`` and
  ``sslmode`` may accompany a URL and take precedence over it.
- ``max_rows``: rows returned at most, default 1000, at most 10000.
- ``timeout``: seconds the statement may run, default 10, at most 300 (PostgreSQL's
  ``statement_timeout``, set for this transaction only; SQLite's progress handler).
- ``read_only``: default ``true``. The statement runs in a read-only transaction
  (PostgreSQL ``BEGIN READ ONLY``; SQLite opens the file read-only with ``query_only``),
  so a task reads unless its author said ``read_only: false``; then the statement runs in
  a transaction that is committed when it succeeds. This guards against mistakes, not
  against a hostile author (a server-side function can still write): a read-only
  database role is the real boundary. On PostgreSQL a read-only statement must return
  rows (``SELECT``, ``VALUES``, ``TABLE``, ``WITH … SELECT``): it is run as a server-side
  cursor, so only ``max_rows + 1`` rows ever leave the server.

``secret_name``: its value is the whole connection URL when it looks like one
(``postgresql://``, ``postgres://``, ``sqlite:///``), and ``connection`` must then not name a
destination; otherwise it is the password, used when ``connection`` gives none.

Result: ``{"columns": [names], "rows": [[values]…], "row_count": n, "truncated": bool}``.
``row_count`` is the number of rows in ``rows``, or for a statement that returns no rows
(``INSERT``/``UPDATE``/``DELETE`` without ``RETURNING``) the number of rows it changed.
``truncated`` says more rows existed than ``max_rows``. Values become JSON: numbers,
strings, booleans and null as they are; ``Decimal`` as a string (exact, which a float is
not); dates and times as ISO 8601 strings; intervals as seconds; bytes as base64 strings;
UUIDs and network addresses as strings; JSON and arrays as JSON; non-finite floats as
strings; anything else as its ``str``.

Where it may connect: PostgreSQL hosts go through ``ToolContext.addresses_for`` (the
server's own database is refused by name and by every address, whatever the allow-list
says, then the egress guard); the checked addresses are given to libpq as ``hostaddr``
(``host`` stays for TLS verification) and a host that is a socket directory is refused.
libpq never falls back to the server's own ``PGPASSWORD`` or ``~/.pgpass``: the password is
always given (empty when there is none) and ``passfile`` points nowhere. SQLite files lie
in the calling tenant's directory ``<STRONGROOM_TOOL_SQLITE_DIR>/<tenant>/`` (SQLite is
off without it), are named relative to it, never under the server's data
directory, are never created, and ``ATTACH``, ``VACUUM INTO`` and changing ``PRAGMA``
settings are refused.

Errors carry the database's own message (``relation "x" does not exist``, ``password
authentication failed for user "y"``) and SQLSTATE, with the password, the credential and
every string parameter scrubbed out, and without the query text.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import math
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import psycopg
import psycopg.errors
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from pydantic import Field

from ..expressions import is_expression
from .base import JSON, Arg, Operation, Tool
from .config import ToolSettings
from .context import Destination, ToolContext
from .errors import InvalidArguments, Problem, ToolError, scrub
from .protected import Protected

DEFAULT_MAX_ROWS = 1000
MAX_ROWS = 10_000
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0
CONNECTION_CHECK = "SELECT 1"
DEFAULT_PORT = 5432
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_DESTINATION = ("url", "host", "port", "user", "password", "database")
# libpq reads a password file when no password is given; this one never exists.
_NO_PASSFILE = "/nonexistent/strongroom-tools/pgpass"
_CURSOR = "strongroom_rows"
_DECLARE = f"DECLARE {_CURSOR} NO SCROLL CURSOR FOR "


class DatabaseSettings(ToolSettings):
    """Where ``database``/``query`` may open SQLite files: one subdirectory per tenant
    (``<tool_sqlite_dir>/<tenant name>/``). ``None`` turns SQLite off, because a path is a
    path on the *server*, next to its own database and key files."""

    tool_sqlite_dir: Path | None = Field(
        None, description="directory database/query steps may open SQLite files in (off if unset)"
    )

    def check_protected(self, protected: Protected) -> None:
        """Refuse a directory that is, contains or is inside the server's own files: it
        would hand them to tasks, and is a mistake to say at once."""
        sqlite_dir = self.tool_sqlite_dir
        clash = None if sqlite_dir is None else protected.overlaps(sqlite_dir)
        if clash is not None:
            raise ValueError(
                f"STRONGROOM_TOOL_SQLITE_DIR ({sqlite_dir}) must be apart from strongroom's own "
                f"files ({clash}): it is, contains or is inside them, so tasks could open the "
                "server's database; give task SQLite files a directory of their own"
            )


_CONNECTION = Arg(
    ("object",),
    fields={
        "url": Arg(("string",)),
        "host": Arg(("string",)),
        "port": Arg(("integer", "string")),
        "user": Arg(("string",)),
        "password": Arg(("string",)),
        "database": Arg(("string",)),
        "sslmode": Arg(("string",), choices=SSLMODES),
    },
)

ARGUMENTS = Arg(
    ("object",),
    fields={
        "query": Arg(("string",)),
        "params": Arg(("array", "object")),
        "connection": _CONNECTION,
        "max_rows": Arg(("integer",), minimum=1, maximum=MAX_ROWS),
        "timeout": Arg(("number",), minimum=0.01, maximum=MAX_TIMEOUT),
        "read_only": Arg(("boolean",)),
    },
)


def _is_url(value: str) -> bool:
    return value.lower().startswith((*POSTGRES_SCHEMES, SQLITE_SCHEME))


def _cross_check(arguments: Mapping[str, Any]) -> list[Problem]:
    connection = arguments.get("connection")
    if not isinstance(connection, Mapping) or "url" not in connection:
        return []
    problems = []
    if connection.keys() & {"host", "port", "user", "database"}:
        problems.append(
            Problem("arguments.connection", "give either url or host, port, user and database")
        )
    url = connection["url"]
    if isinstance(url, str) and not is_expression(url) and not _is_url(url):
        problems.append(
            Problem(
                "arguments.connection.url", "must be a postgresql://, postgres:// or sqlite:/// URL"
            )
        )
    return problems


# -- where to connect ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str

    def __repr__(self) -> str:  # no password in a traceback
        return f"_Postgres({self.user}@{self.host}:{self.port}/{self.database})"


@dataclass(frozen=True)
class _Sqlite:
    path: str


def _invalid(location: str, message: str) -> InvalidArguments:
    return InvalidArguments([Problem(location, message)])


def _port(value: object) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) < 65536:
        raise _invalid("arguments.connection.port", "must be a port number")
    return int(text)


def _url_fields(url: str) -> dict[str, Any]:
    """The connection fields of a ``postgresql://`` URL; errors never repeat the URL."""
    bad = _invalid("arguments.connection.url", "is not a valid postgresql:// URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad from None
    if "," in parts.netloc.rpartition("@")[2]:
        raise _invalid("arguments.connection.url", "must name a single host")
    fields: dict[str, Any] = {"port": port} if port is not None else {}
    if parts.hostname:
        fields["host"] = unquote(parts.hostname)
    if parts.username:
        fields["user"] = unquote(parts.username)
    if parts.password is not None:
        fields["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        fields["database"] = unquote(parts.path.lstrip("/"))
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "sslmode" or value not in SSLMODES:
            raise _invalid(
                "arguments.connection.url", f"query parameter {name} is not supported (sslmode is)"
            )
        fields["sslmode"] = value
    return fields


def _target(connection: Mapping[str, Any] | None, credential: str | None) -> _Postgres | _Sqlite:
    """Where to connect, from ``connection`` and the step's credential."""
    given = dict(connection or {})
    password_from_credential = credential
    if credential and _is_url(credential):
        if given.keys() & set(_DESTINATION):
            raise _invalid(
                "arguments.connection",
                "must not name url, host, port, user, password or database: "
                "the secret_name value is a database URL",
            )
        given["url"] = credential
        password_from_credential = None
    if not given.keys() & set(_DESTINATION):
        raise _invalid(
            "arguments.connection",
            "is required (host and user, or url) unless secret_name holds a database URL",
        )
    fields: dict[str, Any] = {}
    url = given.get("url")
    if url is not None:
        if url.lower().startswith(SQLITE_SCHEME):
            return _Sqlite(url[len(SQLITE_SCHEME) :])
        if not url.lower().startswith(POSTGRES_SCHEMES):
            raise _invalid(
                "arguments.connection.url", "must be a postgresql://, postgres:// or sqlite:/// URL"
            )
        fields = _url_fields(url)
    fields.update({k: v for k, v in given.items() if k != "url"})
    if not fields.get("password") and password_from_credential:
        fields["password"] = password_from_credential
    host, user = fields.get("host"), fields.get("user")
    if not host:
        raise _invalid("arguments.connection.host", "is required")
    if "," in host:
        raise _invalid("arguments.connection.host", "must name a single host")
    if not user:
        raise _invalid("arguments.connection.user", "is required")
    return _Postgres(
        host=host,
        port=_port(fields.get("port", DEFAULT_PORT)),
        user=user,
        password=fields.get("password") or "",
        database=fields.get("database") or user,
        sslmode=fields.get("sslmode", "prefer"),
    )


# -- results -------------------------------------------------------------------------------


def jsonable(value: object) -> JSON:
    """A database value as JSON (see the module docstring for each type)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def _result(
    columns: list[str], rows: list[Any], max_rows: int, affected: int | None = None
) -> JSON:
    names: list[JSON] = list(columns)
    kept: list[JSON] = [[jsonable(v) for v in row] for row in rows[:max_rows]]
    return {
        "columns": names,
        "rows": kept,
        "row_count": len(kept) if columns else max(affected or 0, 0),
        "truncated": len(rows) > max_rows,
    }


_BATCH = 100  # rows fetched at a time, so the byte cap stops the fetch early


def _too_large(limit: int) -> ToolError:
    return ToolError(
        f"database: the rows are larger than {limit} bytes "
        "(STRONGROOM_TASK_MAX_RESULT_BYTES); select fewer or smaller values",
        code="response_too_large",
    )


def _size(value: object) -> int:
    if isinstance(value, str | bytes | bytearray | memoryview):
        return len(value)
    return len(str(value))


def _fetch(fetch: Callable[[int], list[Any]], max_rows: int, max_bytes: int) -> list[Any]:
    """Up to ``max_rows + 1`` rows, a batch at a time, refused as soon as they add up to more
    than ``max_bytes`` (a ``SELECT`` of huge values must not fill the server's memory)."""
    rows: list[Any] = []
    size = 0
    while len(rows) <= max_rows:
        batch = fetch(min(_BATCH, max_rows + 1 - len(rows)))
        for row in batch:
            size += sum(_size(value) for value in row)
            if size > max_bytes:
                raise _too_large(max_bytes)
        rows += batch
        if not batch:
            break
    return rows


def _texts(params: Any) -> tuple[str, ...]:
    """The string parameters, scrubbed from error messages: a database quotes a value it
    cannot convert (``invalid input syntax for type integer: "…"``), and it may be secret."""
    values = params.values() if isinstance(params, Mapping) else params or ()
    return tuple(v for v in values if isinstance(v, str))


def _timed_out(timeout: float) -> ToolError:
    return ToolError(f"database: the query did not finish within {timeout:g} s", code="timeout")


# -- PostgreSQL ----------------------------------------------------------------------------


def _pg_params(params: Any) -> Any:
    if isinstance(params, Mapping):
        return {k: Jsonb(v) if isinstance(v, Mapping) else v for k, v in params.items()}
    if isinstance(params, list):
        return [Jsonb(v) if isinstance(v, Mapping) else v for v in params]
    return None


def _pg_connect(
    target: _Postgres, context: ToolContext, secrets: tuple[str | None, ...]
) -> psycopg.Connection[TupleRow]:
    # the name as given, then each address it resolves to: the server's own database and
    # the egress policy are both checked before libpq opens anything
    addresses = context.addresses_for(target.host, target.port)
    try:
        return psycopg.connect(
            host=",".join([target.host] * len(addresses)),
            hostaddr=",".join(addresses),
            port=target.port,
            user=target.user,
            password=target.password,
            dbname=target.database,
            sslmode=target.sslmode,
            passfile=_NO_PASSFILE,
            connect_timeout=max(2, math.ceil(context.time_left(CONNECT_TIMEOUT))),
            application_name="strongroom-task",
        )
    except psycopg.Error as exc:
        detail = scrub(" ".join(str(exc).split()), *secrets)
        raise ToolError(
            f"database: cannot connect: {detail}",
            code="connect_failed",
            retryable="FATAL" not in detail,
        ) from None


def _pg_error(
    exc: psycopg.Error, query: str, timeout: float, read_only: bool, secrets: tuple[str | None, ...]
) -> ToolError:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return _timed_out(timeout)
    message = exc.diag.message_primary or (str(exc).splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.SyntaxError) and read_only:
        # the error is at the first word of the query: it is not one DECLARE can run
        first_word = len(_DECLARE) + len(query) - len(query.lstrip()) + 1
        if exc.diag.statement_position == str(first_word):
            message = (
                "a read-only query must return rows (SELECT, VALUES, TABLE or WITH … SELECT); "
                "set read_only: false to run other statements"
            )
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        message += " (the query ran read-only; set read_only: false to write)"
    state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    return ToolError(scrub(f"database: {message}{state}", *secrets), code="database_error")


def _pg_query(
    target: _Postgres, arguments: Mapping[str, Any], credential: str | None, context: ToolContext
) -> JSON:
    query: str = arguments["query"]
    params = _pg_params(arguments.get("params"))
    read_only = arguments.get("read_only", True)
    max_rows = arguments.get("max_rows", DEFAULT_MAX_ROWS)
    timeout = context.time_left(float(arguments.get("timeout", DEFAULT_TIMEOUT)))
    max_bytes = context.config.max_response_bytes
    secrets = (target.password, credential, *_texts(arguments.get("params")))
    conn = _pg_connect(target, context, secrets)
    try:
        conn.read_only = read_only
        cur = conn.cursor()
        cur.execute(
            "SELECT set_config('statement_timeout', %s, true)", (str(math.ceil(timeout * 1000)),)
        )
        if read_only:
            # binary=True forces the extended protocol (one statement) even without params
            cur.execute(_DECLARE + query, params, binary=True)

            def forward(count: int) -> list[Any]:
                cur.execute(f"FETCH FORWARD {count} FROM {_CURSOR}")
                return cur.fetchall()

            forward(0)  # FETCH 0 describes the columns without reading a row
            columns = [c.name for c in cur.description or []]
            return _result(columns, _fetch(forward, max_rows, max_bytes), max_rows)
        with conn.pipeline():  # pipeline mode also means the extended protocol
            cur.execute(query, params)
        columns = [c.name for c in cur.description or []]
        rows = _fetch(cur.fetchmany, max_rows, max_bytes) if columns else []
        result = _result(columns, rows, max_rows, cur.rowcount)
        conn.commit()
        return result
    except psycopg.Error as exc:
        raise _pg_error(exc, query, timeout, read_only, secrets) from None
    finally:
        conn.close()


# -- SQLite --------------------------------------------------------------------------------

# PRAGMAs that take an argument and only read; any other PRAGMA with an argument may
# change a setting (query_only, writable_schema…) and is refused.
_READING_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):  # VACUUM INTO attaches too
        return sqlite3.SQLITE_DENY
    changing = arg2 is not None and (arg1 or "").lower() not in _READING_PRAGMAS
    if action == sqlite3.SQLITE_PRAGMA and changing:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


# A tenant's directory is its name: one path component, nothing that walks elsewhere.
_TENANT_DIRECTORY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _not_allowed(message: str) -> ToolError:
    return ToolError(f"database: {message}", code="not_allowed")


def _sqlite_file(path: str, context: ToolContext) -> Path:
    """The file a ``sqlite:///`` path names, inside the calling tenant's own directory
    ``<sqlite_dir>/<tenant>/``, resolved (symbolic links followed) and checked.

    The path is relative to that directory; an absolute path, ``..`` or a link that leads
    out of it (to another tenant's directory, to the server's data directory) is refused,
    and so is a call without a tenant, which would have no directory of its own. The
    tenant's directory must exist under its exact name (``acme`` is not ``Acme``'s, even
    on a file system that ignores case) and must not itself be a link."""
    sqlite_dir = context.config.settings(DatabaseSettings).tool_sqlite_dir
    if sqlite_dir is None:
        raise _not_allowed("SQLite is turned off on this server (it has no tool SQLite directory)")
    tenant = context.tenant
    if not tenant or not _TENANT_DIRECTORY.match(tenant) or ".." in tenant:
        raise _not_allowed(
            "SQLite files are opened in the tenant's own directory, and this call has no tenant"
        )
    name = unquote(path.partition("?")[0])
    if not name.strip("/") or name == ":memory:":
        raise _invalid("arguments.connection.url", "must name a SQLite file")
    if name.startswith("/"):
        raise _not_allowed(
            "the SQLite path must be relative to the tenant's directory (sqlite:///file.db)"
        )
    root = sqlite_dir.resolve()
    try:
        present = tenant in os.listdir(root)
    except OSError:
        present = False
    home = root / tenant
    if not present or home.is_symlink() or not home.is_dir():
        raise _not_allowed("this tenant has no directory in the server's tool SQLite directory")
    candidate = (home / name).resolve()
    if home not in candidate.parents:
        raise _not_allowed(
            "the SQLite file must be inside the tenant's directory of the server's tool SQLite "
            "directory"
        )
    context.check_destination(Destination.file(candidate))
    return candidate


def _sqlite_params(params: Any) -> Any:
    def plain(value: Any) -> Any:
        return json.dumps(value) if isinstance(value, Mapping | list) else value

    if isinstance(params, Mapping):
        return {k: plain(v) for k, v in params.items()}
    if isinstance(params, list):
        return [plain(v) for v in params]
    return ()


def _sqlite_error(exc: Exception, timeout: float, secrets: tuple[str, ...] = ()) -> ToolError:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_INTERRUPT":
        return _timed_out(timeout)
    message = str(exc)
    if name == "SQLITE_AUTH":
        message += " (ATTACH, VACUUM INTO and changing PRAGMA settings are refused)"
    elif name == "SQLITE_READONLY":
        message += " (the query ran read-only; set read_only: false to write)"
    elif name == "SQLITE_TOOBIG":
        return ToolError(
            "database: a value is larger than the result limit (STRONGROOM_TASK_MAX_RESULT_BYTES)",
            code="response_too_large",
        )
    elif name == "SQLITE_CANTOPEN":
        message = "cannot open the SQLite file (it must exist)"
    return ToolError(scrub(f"database: {message}", *secrets), code="database_error")


def _sqlite_query(target: _Sqlite, arguments: Mapping[str, Any], context: ToolContext) -> JSON:
    path = _sqlite_file(target.path, context)
    read_only = arguments.get("read_only", True)
    max_rows = arguments.get("max_rows", DEFAULT_MAX_ROWS)
    timeout = context.time_left(float(arguments.get("timeout", DEFAULT_TIMEOUT)))
    deadline = time.monotonic() + timeout
    mode = "ro" if read_only else "rw"  # never "rwc": a typo must not create a database
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode={mode}",
            uri=True,
            timeout=min(timeout, 5.0),
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, timeout) from None
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        # No text or blob larger than a whole result: SQLite refuses to build
        # one (``randomblob(10000000)``) instead of handing it over to be refused.
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(context.config.max_response_bytes, 1024))
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_authorize)
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        if not read_only:
            conn.execute("BEGIN")
        cur = conn.execute(arguments["query"], _sqlite_params(arguments.get("params")))
        columns = [c[0] for c in cur.description or []]
        max_bytes = context.config.max_response_bytes
        rows = _fetch(cur.fetchmany, max_rows, max_bytes) if columns else []
        result = _result(columns, rows, max_rows, cur.rowcount)
        cur.close()
        if not read_only:
            conn.execute("COMMIT")
        return result
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise _sqlite_error(exc, timeout, _texts(arguments.get("params"))) from None
    finally:
        conn.close()


def query(arguments: dict[str, Any], credential: str | None, context: ToolContext) -> JSON:
    """Run the statement; the result is ``{"columns", "rows", "row_count", "truncated"}``."""
    if arguments.get("query") is None:
        arguments = {**arguments, "query": CONNECTION_CHECK}
    target = _target(arguments.get("connection"), credential)
    if isinstance(target, _Sqlite):
        return _sqlite_query(target, arguments, context)
    return _pg_query(target, arguments, credential, context)


# Where and as whom to connect (a bare secret in any connection field) authorises the query;
# the query text and its parameters are data. See Operation.credentials.
TOOL = Tool.of(
    "database",
    Operation("query", ARGUMENTS, query, _cross_check, credentials=("connection.*",), stores=True),
    settings=DatabaseSettings,
)
