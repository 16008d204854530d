"""``/healthz``: no key needed; answers 200 only when the database does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from . import schemas
from .deps import Services, services
from .schemas import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health, responses=error_responses(503))
def healthz(svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    svc.store.ping()
    return {"status": "ok", "database": "ok"}
