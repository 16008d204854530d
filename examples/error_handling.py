"""Error Handling: every error the client raises has a .code (and a .message)."""

import os
import sys

from strongroom import Julep, StrongroomError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

try:
    secret = julep.secrets.get(name="non_existent_secret")
except StrongroomError as error:
    if error.code == "not_found":
        print("Secret not found")
    else:
        print("Error retrieving secret:", error, file=sys.stderr)

try:
    # Attempt to create a secret with an invalid name
    secret = julep.secrets.create(name="invalid name", value="test")
except StrongroomError as error:
    if error.code == "validation_error":
        print(f"Validation error: {error.message}")
    else:
        print("Error creating secret:", error, file=sys.stderr)

julep.secrets.upsert(name="existing_secret", value="test")  # so the next create collides
try:
    # Attempt to create a duplicate secret
    secret = julep.secrets.create(name="existing_secret", value="test")
except StrongroomError as error:
    if error.code == "conflict":
        print("Secret already exists")
    else:
        print("Error creating secret:", error, file=sys.stderr)
finally:
    julep.secrets.purge(name="existing_secret")  # gone at once, so this can run again
