"""Listing Secrets: filter by metadata, on one field or on several."""

import os

from strongroom import Julep

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# Three secrets with different metadata; they are purged again at the end.
examples = {
    "filter_example_stripe": {"environment": "production", "owner": "payments-team"},
    "filter_example_sendgrid": {"environment": "production", "owner": "marketing-team"},
    "filter_example_stripe_test": {"environment": "staging", "owner": "payments-team"},
}
for name, metadata in examples.items():
    julep.secrets.upsert(name=name, value="example", metadata=metadata)

try:
    # Filter by metadata
    production_secrets = julep.secrets.list(metadata={"environment": "production"})
    print("Production:", ", ".join(s.name for s in production_secrets.items))

    # Filter by multiple metadata fields
    team_secrets = julep.secrets.list(
        metadata={"environment": "production", "owner": "payments-team"},
    )
    print("Production, payments-team:", ", ".join(s.name for s in team_secrets.items))
finally:
    for name in examples:
        julep.secrets.purge(name=name)  # gone at once, so this can run again
