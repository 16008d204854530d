"""``/healthz``: no key needed; answers 200 only when the database does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .deps import Svc
from .schemas.common import Health, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=error_responses(503))
def healthz(svc: Svc) -> dict[str, Any]:
    svc.store.ping()
    return {"status": "ok", "database": "ok"}
