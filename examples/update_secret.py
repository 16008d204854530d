"""Updating Secrets: a new value (a new version), description and metadata in one call."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is a secret to update when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

updated_secret = julep.secrets.update(
    name="stripe_api_key",
    value="sk_test_new_value...",
    description="Updated Stripe API key",
    metadata={
        "environment": "production",
        "owner": "payments-team",
        "rotated": "2025-05-10",
    },
)
print(f"Updated secret: {updated_secret.name}")
