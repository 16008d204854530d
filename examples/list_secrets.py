"""Listing Secrets: names and descriptions; a list never carries values."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is something to list when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(
        name="stripe_api_key",
        value="sk_test_...",
        description="Stripe API key for payment processing",
        metadata={"environment": "production", "owner": "payments-team"},
    )

# List all secrets
secrets = julep.secrets.list()
for secret in secrets.items:
    print(f"{secret.name}: {secret.description}")
    # secret.value is "ENCRYPTED" here: only secrets.get returns the value.
