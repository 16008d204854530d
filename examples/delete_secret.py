"""Deleting Secrets: the secret goes, restorable for a while; a purge destroys it."""

import contextlib
import os

from strongroom import Julep, SecretAlreadyExistsError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

# So that there is a secret to delete when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

julep.secrets.delete(name="stripe_api_key")
print("Secret deleted")

# A deleted secret can be restored (julep.secrets.restore) until the server's recovery
# window ends, 7 days by default, and its name stays taken meanwhile. Purging ends it at
# once (a key with secrets:admin), so that this example can run again.
julep.secrets.purge(name="stripe_api_key")
