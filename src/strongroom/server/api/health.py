"""``/healthz`` and ``/readyz``: no key needed, and nothing in them a key would protect.

``/healthz`` says the process answers and its database does (for a liveness probe);
``/readyz`` also that it can serve everything it is meant to: the keyring unsealed, and
(in a process that runs executions) the execution engine started. A load balancer sends
traffic only to a ready process.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..errors import Unavailable
from .deps import Svc
from .schemas.common import Health, Ready, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=error_responses(503))
def healthz(svc: Svc) -> dict[str, Any]:
    svc.store.ping()
    return {"status": "ok", "database": "ok"}


@router.get("/readyz", response_model=Ready, responses=error_responses(503))
def readyz(request: Request, svc: Svc) -> dict[str, Any]:
    svc.store.ping()
    if not svc.barrier.unsealed:
        raise Unavailable("the keyring is sealed", headers={"Retry-After": "1"})
    runs_engine = bool(request.app.state.run_engine)
    if runs_engine and not svc.engine.running:
        raise Unavailable("the execution engine is not running", headers={"Retry-After": "1"})
    return {
        "status": "ready",
        "database": "ok",
        "keyring": "unsealed",
        "engine": "running" if runs_engine else "off",
    }
