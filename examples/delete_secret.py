"""Deleting Secrets: the secret and all its versions go; the name is free at once."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is a secret to delete when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

julep.secrets.delete(name="stripe_api_key")
print("Secret deleted")
