"""Walking offset-paginated lists (``list_all``), for both clients.

``fetch(offset)`` returns one page: an object with ``items`` and ``has_more``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T", covariant=True)


class Page(Protocol[T]):
    @property
    def items(self) -> Sequence[T]: ...

    @property
    def has_more(self) -> bool: ...


def walk(fetch: Callable[[int], Page[T]]) -> Iterator[T]:
    offset = 0
    while True:
        page = fetch(offset)
        yield from page.items
        if not page.has_more:
            return
        offset += len(page.items)


async def awalk(fetch: Callable[[int], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    offset = 0
    while True:
        page = await fetch(offset)
        for item in page.items:
            yield item
        if not page.has_more:
            return
        offset += len(page.items)
