"""Creating Secrets: store a new secret, with a description and metadata."""

import os

from strongroom import Julep, SecretAlreadyExistsError

# base_url comes from STRONGROOM_BASE_URL (default http://127.0.0.1:8000).
julep = Julep(api_key=os.environ["STRONGROOM_API_KEY"])

try:
    secret = julep.secrets.create(
        name="stripe_api_key",
        value="sk_test_...",
        description="Stripe API key for payment processing",
        metadata={"environment": "production", "owner": "payments-team"},
    )
    print(f"Created secret: {secret.name}")
except SecretAlreadyExistsError:  # error.code == "conflict": a second run lands here
    print("Secret stripe_api_key already exists (python examples/delete_secret.py removes it)")
