"""The base of every answer model: unknown fields are kept, so that a newer server's
answers still parse, and models are frozen, since they are what the server said."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
