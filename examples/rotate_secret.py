"""Secret Rotation: the guide's rotateSecret, then the SDK's safer secrets.rotate."""

import contextlib
import datetime as dt
import os
import sys
import uuid

from strongroom import Julep, Secret, SecretAlreadyExistsError, StrongroomError

julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])


def now() -> str:
    """`new Date().toISOString()`"""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rotate_secret(julep: Julep, secret_name: str, new_value: str) -> Secret:
    """Safely rotate a secret by creating a new one and verifying it works
    before deleting the old one. (The guide's version, as written.)"""
    # Create a temporary secret with a random suffix
    temp_name = f"{secret_name}_rotation_{str(uuid.uuid4())[:8]}"

    # Create the new secret
    julep.secrets.create(
        name=temp_name,
        value=new_value,
        description=f"Temporary rotation for {secret_name}",
        metadata={"rotationDate": now()},
    )

    # Here you would test that the new secret works
    # ...

    # If tests pass, update metadata on the old secret
    old_secret = julep.secrets.get(name=secret_name)
    old_metadata = old_secret.metadata or {}
    julep.secrets.update(
        name=secret_name,
        metadata={
            **old_metadata,
            "archived": "true",
            "replacedBy": temp_name,
            "archivedDate": now(),
        },
    )

    # Rename the temporary secret to the standard name
    julep.secrets.delete(name=secret_name)
    julep.secrets.update(
        name=temp_name,
        new_name=secret_name,
        description=old_secret.description,
        metadata={"lastRotated": now()},
    )
    return julep.secrets.get(name=secret_name)


# Example usage
def rotate_stripe_key() -> None:
    new_key = "sk_test_new_value_after_rotation"
    try:
        rotated_secret = rotate_secret(julep, "stripe_api_key", new_key)
        print(f"Rotated secret: {rotated_secret.name}")
    except StrongroomError as error:
        sys.exit(f"Error rotating secret: {error}")


def key_works(value: str) -> bool:
    # Here you would test that the new key works, e.g. make one Stripe call with it.
    return value.startswith("sk_test_")


def rotate_stripe_key_safely() -> None:
    """The same rotation with ``secrets.rotate``, which is safer than the guide's version:

    - the secret exists throughout: there is no moment between the delete and the rename
      when readers get not_found, and no crash can leave only the temporary secret behind;
    - the old value is kept as the previous version (the guide's delete destroys it and
      its history), so a bad rotation can be rolled back;
    - it is one conditional update: if someone changes the secret meanwhile it fails with
      precondition_failed instead of overwriting their change;
    - ``check`` runs before anything changes; if it fails, nothing does.
    """
    try:
        rotated = julep.secrets.rotate("stripe_api_key", "sk_test_rotated_safely", check=key_works)
    except StrongroomError as error:
        sys.exit(f"Error rotating secret: {error}")
    previous = julep.secrets.get(name="stripe_api_key", version=rotated.version - 1)
    print(f"Rotated secret: {rotated.name} (version {rotated.version})")
    print(f"Previous value still readable as version {previous.version}")


# So that there is a secret to rotate when this example runs on its own.
with contextlib.suppress(SecretAlreadyExistsError):
    julep.secrets.create(name="stripe_api_key", value="sk_test_...")

rotate_stripe_key()
rotate_stripe_key_safely()
