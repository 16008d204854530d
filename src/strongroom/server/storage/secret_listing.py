"""A page of a tenant's secrets in name order, filtered by metadata, walked in an index.

Each top-level metadata entry of a secret is a row of ``secret_metadata_entries``, keyed
by a hash of the entry (:func:`metadata_entry_hash`), so a containment filter walks
``ix_secret_metadata_lookup`` (tenant, entry, name) instead of scanning every secret.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ..metadata_entries import metadata_entry_hash
from ..rules import ResourceRule
from . import schema as t
from .dialect import Dialect


def page_rows(
    conn: Connection,
    dialect: Dialect,
    tenant_id: str,
    limit: int,
    offset: int,
    metadata_filter: Mapping[str, Any],
    rule: ResourceRule | None = None,
) -> Sequence[Row[Any]]:
    """Up to ``limit`` + 1 rows of ``secrets`` (one more than the page, to tell whether
    more follow), each holding every entry of ``metadata_filter`` and within ``rule``.

    A rule's selector is more entries to hold (a filter asking another value of the same
    key then holds nothing, as it should); its globs bound the names walked.
    """
    wanted = {metadata_entry_hash(k, v) for k, v in metadata_filter.items()}
    globs = rule.names if rule else ()
    if rule:
        wanted.update(rule.selector_entries())
    entries = sorted(wanted)
    if len(entries) > 1:
        # The sparsest entry drives the walk (bound as e0); the others are checked.
        driver = sparsest_entry(conn, tenant_id, entries, offset + limit + 1)
        entries.insert(0, entries.pop(driver))
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit + 1, "offset": offset}
    params.update((f"e{i}", entry) for i, entry in enumerate(entries))
    params.update((f"g{i}", dialect.glob_pattern(glob)) for i, glob in enumerate(globs))
    return conn.execute(_list_statement(len(entries), len(globs), dialect), params).all()


# How many index steps a multi-entry filter may spend per entry choosing which one drives
# the walk (see ``sparsest_entry``): enough to tell a 5% entry from a 60% one.
_PROBE_DEPTH = 1000


def sparsest_entry(conn: Connection, tenant_id: str, entries: list[bytes], depth: int) -> int:
    """Which entry to drive by: the one with the fewest secrets among the first names.

    Driving by an entry costs one step per secret that holds it, up to the page's last
    name. Counting every entry's secrets could cost as much as the walk; instead each
    entry is probed K index steps deep (K = ``depth``, at most ``_PROBE_DEPTH``): an
    entry with fewer than K secrets is counted exactly, and the fewest wins; when every
    entry has K or more, the one whose K-th name sorts last is the sparsest over the
    names a page will cover. Ties go to the lower hash, so the choice is deterministic.
    """
    k = min(depth, _PROBE_DEPTH)
    params: dict[str, Any] = {"tenant_id": tenant_id, "k": k, "k_1": k - 1}
    params.update((f"e{i}", entry) for i, entry in enumerate(entries))
    found = conn.execute(_probe_statement(len(entries)), params).one()
    counts, kth_names = found[0::2], found[1::2]
    if min(counts) < k:
        return counts.index(min(counts))
    return max(range(len(entries)), key=lambda i: (kth_names[i], -i))


@functools.lru_cache(maxsize=64)
def _list_statement(entries: int, globs: int, dialect: Dialect) -> sa.Select[Any]:
    """A page of a tenant's secrets in name order, filtered by ``entries`` metadata entries.

    Two steps in one statement: first the page's names, from an index that holds them, so
    each row skipped by the offset costs one index step and no look-up into ``secrets``;
    then the page's rows, by (tenant, name). Unfiltered, the names come from
    ``uq_secrets_live_name``. Filtered, entry ``e0`` drives a walk of
    ``ix_secret_metadata_lookup`` (tenant, entry, name) and every other entry is checked
    per candidate by a probe of the same index on the name (unique in a tenant), so
    neither step reads a table row it does not return.

    ``lateral`` (PostgreSQL) fetches each row in a ``LATERAL (... LIMIT 1)``, which the
    planner cannot turn into a hash join: costing a random page at four sequential ones,
    it would rather scan a mid-sized tenant's whole table than make the page's hundred
    index look-ups (3 ms against 0.6 at 10,000 secrets). SQLite has no LATERAL, and looks
    the rows up by index anyway.

    A key's rule adds ``globs`` name patterns (bound as ``g0``..), one of which each name
    walked must match: a condition on the index's own name column, so the walk reads no
    more rows for it.

    Bound: ``tenant_id``, ``e0``..``e{entries-1}``, ``g0``..``g{globs-1}``, ``limit`` and
    ``offset``. Built once per entry and glob count and dialect: building and keying this
    statement costs more than running it.
    """
    lateral = dialect.lateral
    s, m = t.secrets, t.secret_metadata_entries
    tenant: sa.BindParameter[Any] = sa.bindparam("tenant_id")
    if entries == 0:
        # Walks uq_secrets_live_name, which holds only the live secrets' names.
        names = (
            sa.select(s.c.name)
            .where(s.c.tenant_id == tenant, s.c.deleted_at.is_(None))
            .order_by(s.c.name)
        )
    else:
        walk = m.alias("m0")
        names = (
            sa.select(walk.c.name)
            .where(walk.c.tenant_id == tenant, walk.c.entry_hash == sa.bindparam("e0"))
            .order_by(walk.c.name)
        )
        for i in range(1, entries):
            other = m.alias(f"m{i}")
            # EXISTS (SELECT name ...), not SELECT *: SQLite then answers from the index
            # alone instead of also reading each entry's row.
            names = names.where(
                sa.select(other.c.name)
                .where(
                    other.c.tenant_id == tenant,
                    other.c.entry_hash == sa.bindparam(f"e{i}"),
                    other.c.name == walk.c.name,
                )
                .exists()
            )
    if globs:
        column = names.selected_columns[0]
        names = names.where(
            sa.or_(*(dialect.name_glob(column, sa.bindparam(f"g{i}")) for i in range(globs)))
        )
    page = names.limit(sa.bindparam("limit")).offset(sa.bindparam("offset")).subquery("page")
    if lateral:
        # Names are unique in a tenant: LIMIT 1 changes no answer, only the plan.
        row = (
            sa.select(s)
            .where(s.c.tenant_id == tenant, s.c.name == page.c.name, s.c.deleted_at.is_(None))
            .limit(1)
            .lateral("row")
        )
        return sa.select(row).select_from(page).join(row, sa.true()).order_by(page.c.name)
    return (
        sa.select(s)
        .join(
            page,
            sa.and_(s.c.tenant_id == tenant, s.c.name == page.c.name, s.c.deleted_at.is_(None)),
        )
        .order_by(page.c.name)
    )


@functools.lru_cache(maxsize=32)
def _probe_statement(entries: int) -> sa.Select[Any]:
    """For each entry ``e{i}``: how many of the first ``k`` holders it has, and the k-th
    holder's name (``k_1`` = k - 1), each at most k steps of the lookup index."""
    m = t.secret_metadata_entries
    probes: list[Any] = []
    for i in range(entries):
        holders = sa.select(m.c.name).where(
            m.c.tenant_id == sa.bindparam("tenant_id"), m.c.entry_hash == sa.bindparam(f"e{i}")
        )
        first_k = holders.limit(sa.bindparam("k")).subquery(f"first{i}")
        count = sa.select(sa.func.count()).select_from(first_k).scalar_subquery()
        kth = holders.order_by(m.c.name).limit(1).offset(sa.bindparam("k_1")).scalar_subquery()
        probes += [count.label(f"n{i}"), kth.label(f"k{i}")]
    return sa.select(*probes)


def within_rule(
    dialect: Dialect,
    rule: ResourceRule | None,
    name: sa.ColumnElement[Any],
    secret_id: Any,
    *,
    entries: bool = True,
) -> list[sa.ColumnElement[bool]]:
    """Conditions that hold for a row about a secret within ``rule`` (none without one):
    its ``name`` matches a glob, and (unless ``entries`` is False: the caller checks the
    selector itself) the secret ``secret_id`` holds every selector entry (a secret since
    deleted holds none)."""
    if rule is None:
        return []
    found: list[sa.ColumnElement[bool]] = []
    if rule.names:
        globs = (dialect.name_glob(name, sa.literal(dialect.glob_pattern(g))) for g in rule.names)
        found.append(sa.or_(*globs))
    m = t.secret_metadata_entries
    for entry in rule.selector_entries() if entries else ():
        found.append(sa.exists().where(m.c.secret_id == secret_id, m.c.entry_hash == entry))
    return found
