"""Partial Updates: change one field; the fields left out keep their values."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is a secret to update when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

# Update only the description
updated_secret = julep.secrets.update(
    name="stripe_api_key",
    description="New description for Stripe API key",
)
print(f"Description: {updated_secret.description}")

# Update only the metadata (it replaces the whole metadata object)
updated_metadata = julep.secrets.update(
    name="stripe_api_key",
    metadata={"lastRotated": "2025-05-10"},
)
print(f"Metadata: {updated_metadata.metadata}")
print(f"Value unchanged: still version {updated_metadata.version}")
