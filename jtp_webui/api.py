"""The ``/jtp/v1`` HTTP API, added to the WebUI's FastAPI app (the same app with or without ``--nowebui``).

    GET  /jtp/v1/models  → {"models": [{"name", "downloaded"}], "default", "loaded", "models_dir"}
    POST /jtp/v1/tag     {"image": b64} or {"images": [b64, ...]}, optional "model" and TagOptions fields
                         → {"model", "results": [{"tags": "a, b", "scores": {"a": 0.93, ...}}]}
    POST /jtp/v1/unload  → {"unloaded": true | false}

Errors come back as ``{"detail": message}`` with a 4xx status for anything the client can fix; a bad body too: the
body is read raw and parsed here (JSON whatever its Content-Type), so FastAPI's 422 with a list ``detail`` never
answers. Handlers run in FastAPI's thread pool, so a model run never blocks the server's event loop.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures' annotations at run time.
import secrets
from collections.abc import Callable
from typing import Any

from .service import RequestError, TaggerService

PREFIX = "/jtp/v1"


def add_routes(app: Any, service: TaggerService, api_auth: str | None = None) -> bool:
    """Add the routes to ``app``, serving ``service``.

    Called again for the same app (scripts reloaded), it only points the routes at the new service, so one
    model stays in memory; returns whether routes were added.
    """
    from fastapi import APIRouter, Depends, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool

    first = getattr(app.state, "jtp_service", None) is None
    app.state.jtp_service = service
    if not first:
        return False

    def current() -> TaggerService:
        return app.state.jtp_service

    dependencies = [Depends(basic_auth(api_auth))] if api_auth else []
    router = APIRouter(prefix=PREFIX, tags=["JTP Tagger"], dependencies=dependencies)

    def answer(handler: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return handler()
        except RequestError as error:
            raise HTTPException(status_code=error.status, detail=error.message) from None

    @router.get("/models")
    def models() -> dict[str, Any]:
        return answer(current().models)

    @router.post("/tag")
    async def tag(request: Request) -> dict[str, Any]:
        raw = await request.body()
        return await run_in_threadpool(answer, lambda: current().handle_tag(raw))

    @router.post("/unload")
    def unload() -> dict[str, Any]:
        return answer(current().handle_unload)

    app.include_router(router)
    return True


def basic_auth(api_auth: str) -> Callable[..., None]:
    """A FastAPI dependency checking HTTP Basic credentials against the WebUI's ``--api-auth user:pass,...``.

    The WebUI applies ``--api-auth`` to its own routes only; an extension's routes must check it themselves.
    """
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    accounts = dict(item.split(":", 1) for item in api_auth.split(",") if ":" in item)

    def check(credentials: HTTPBasicCredentials = Depends(HTTPBasic())) -> None:  # noqa: B008
        password = accounts.get(credentials.username)
        if password is None or not secrets.compare_digest(credentials.password, password):
            raise HTTPException(status_code=401, detail="incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})

    return check
