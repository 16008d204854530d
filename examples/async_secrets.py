"""Working with Async/Await: AsyncJulep has every call of Julep, awaited."""

import asyncio
import os
import sys

from strongroom import AsyncJulep, Secret, SecretList, StrongroomError


async def manage_secrets(julep: AsyncJulep) -> tuple[Secret, SecretList]:
    try:
        # Create a secret
        secret = await julep.secrets.create(
            name="database_password",
            value="complex-password-123",
            description="Production database password",
        )

        # List all secrets
        secrets = await julep.secrets.list()

        # The guide also creates a task using the secret here; that arrives with tasks.

        return secret, secrets
    except StrongroomError as error:
        print("Error managing secrets:", error, file=sys.stderr)
        raise


async def main() -> None:
    async with AsyncJulep(api_key=os.environ["STRONGROOM_API_KEY"]) as julep:
        secret, secrets = await manage_secrets(julep)
        print(f"Created secret: {secret.name}")
        print("Secrets:", ", ".join(s.name for s in secrets.items))
        # purged, not only deleted: a deleted secret holds its name, and this runs again
        await julep.secrets.purge(name="database_password")
        print("Deleted secret: database_password")


asyncio.run(main())
