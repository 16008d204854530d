"""A page of a listing, and how one is cut from the rows a query returned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool

    @classmethod
    def cut(cls, rows: Sequence[R], limit: int, make: Callable[[R], T]) -> Page[T]:
        """The page of ``limit`` items from ``rows``, fetched with one more than ``limit``
        so that their count tells whether more follow."""
        return cls([make(row) for row in rows[:limit]], has_more=len(rows) > limit)
