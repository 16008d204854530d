"""The ceiling: a bare FastAPI endpoint returning constant JSON, under uvicorn.

It is served exactly as ``strongroom serve`` serves the real app (one worker,
``log_config=None``, ``access_log=False``, no server header), so the gap between the two
is what strongroom itself costs, not FastAPI, uvicorn or the load generator. The endpoint
is a sync ``def`` like strongroom's routes, so it pays the same threadpool hop. Its POST
and PATCH take a JSON body as strongroom's do and answer the same constant.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()

_BODY = {
    "id": "00000000-0000-0000-0000-000000000000",
    "name": "ceiling",
    "description": None,
    "metadata": {"environment": "production"},
    "value": "constant",
    "version": 1,
    "created_at": "2024-01-01T00:00:00.000000Z",
    "updated_at": "2024-01-01T00:00:00.000000Z",
}


@app.get("/v1/secrets/{name}")
def constant(name: str) -> dict[str, Any]:
    return _BODY


@app.get("/async/{name}")
async def constant_async(name: str) -> dict[str, Any]:
    """The same without the threadpool hop, to show what that hop costs."""
    return _BODY


class _Write(BaseModel):
    """A request body shaped like strongroom's create and update bodies, parsed the same way
    (pydantic), so the write rows of the ceiling pay for reading and validating JSON too."""

    name: str | None = None
    value: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


@app.post("/v1/secrets", status_code=201)
def create(body: _Write) -> dict[str, Any]:
    return _BODY


@app.patch("/v1/secrets/{name}")
def update(name: str, body: _Write) -> dict[str, Any]:
    return _BODY


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
