"""Records to rows and back, for the tables whose columns are their record's fields: each
field in the column of its name, but a JSON field as text in a column of its own name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def load(text: str | None) -> Any:
    """The value of a nullable JSON column: SQL NULL reads as None, like JSON ``null``."""
    return None if text is None else json.loads(text)


def values_of(record: DataclassInstance, json_columns: Mapping[str, str]) -> dict[str, Any]:
    """The column values of ``record``; ``json_columns`` names the column of each JSON field."""
    values = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name in json_columns:
            values[json_columns[field.name]] = dump(value)
        else:
            values[field.name] = value
    return values


def record_of(cls: type[R], row: Row[Any], json_columns: Mapping[str, str]) -> R:
    """The ``cls`` record a row of its table holds (the inverse of :func:`values_of`)."""
    found = row._mapping
    return cls(
        **{
            field.name: load(found[json_columns[field.name]])
            if field.name in json_columns
            else found[field.name]
            for field in fields(cls)
        }
    )
