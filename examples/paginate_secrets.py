"""Listing Secrets: a page at a time with limit and offset, or every page with list_all."""

import os

from strongroom import Julep

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# Fifteen secrets to page through; they are purged again at the end.
names = [f"paginate_example_{i:02d}" for i in range(1, 16)]
for name in names:
    julep.secrets.upsert(name=name, value="example", description="Pagination example")

try:
    # List with pagination
    secrets_page1 = julep.secrets.list(limit=10, offset=0)
    secrets_page2 = julep.secrets.list(limit=10, offset=10)
    for number, page in enumerate([secrets_page1, secrets_page2], start=1):
        shown = ", ".join(secret.name for secret in page.items)
        print(f"Page {number} ({len(page.items)} secrets, has_more={page.has_more}): {shown}")

    # Or let the SDK fetch the pages as the loop goes.
    every = [secret.name for secret in julep.secrets.list_all(page_size=10)]
    print(f"All pages: {len(every)} secrets")
finally:
    for name in names:
        julep.secrets.purge(name=name)  # gone at once, so this can run again
