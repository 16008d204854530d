"""Retrieving Secrets: get one secret by name, with its value."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is a secret to read when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

secret = julep.secrets.get(name="stripe_api_key")
print(f"Secret: {secret.name}, Created: {secret.created_at.isoformat()}")

# Access the secret value
print(f"Secret value: {secret.value}")
