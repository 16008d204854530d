/**
 * Walking an offset-paginated list (`listAll`), for every resource: fetch a page, yield its
 * items, and go on while the server says more follow. Mirrors the Python SDK's `_pages.py`.
 */

import type { Page } from "./types.js";

export async function* walk<T>(
  fetchPage: (offset: number) => Promise<Page<T>>,
): AsyncGenerator<T, void, undefined> {
  let offset = 0;
  for (;;) {
    const page = await fetchPage(offset);
    yield* page.items;
    if (!page.hasMore || page.items.length === 0) {
      return;
    }
    offset += page.items.length;
  }
}
