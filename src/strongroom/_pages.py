"""List answers, and walking offset-paginated lists (``list_all``) for both clients.

A list answer iterates its items: ``for secret in client.secrets.list(): ...`` reads the
same as ``for secret in page.items``. That replaces pydantic's own iteration (the model's
``(field, value)`` pairs, what ``dict(model)`` uses); ``page.model_dump()`` still gives
the fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from ._models import Model

T = TypeVar("T")


class ItemList(Model, Generic[T]):
    """An answer that is a list of ``items``."""

    items: list[T]

    # The element type cannot be T: an override of BaseModel.__iter__ has to keep its
    # return type, a generator of tuples, and Any is the one item type compatible with it.
    # ``.items`` is the typed way in.
    def __iter__(self) -> Generator[Any, None, None]:
        yield from self.items


class Page(ItemList[T]):
    """One page of an offset-paginated list; ``has_more`` says whether another follows."""

    limit: int
    offset: int
    has_more: bool


def walk(fetch: Callable[[int], Page[T]]) -> Iterator[T]:
    """Every item, fetching the page at each offset as the loop reaches it."""
    offset = 0
    while True:
        page = fetch(offset)
        yield from page.items
        if not page.has_more:
            return
        offset += len(page.items)


async def awalk(fetch: Callable[[int], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """:func:`walk`, awaiting each page."""
    offset = 0
    while True:
        page = await fetch(offset)
        for item in page.items:
            yield item
        if not page.has_more:
            return
        offset += len(page.items)
