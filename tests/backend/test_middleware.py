"""The pure-ASGI middleware: X-Served-By on every response, and an OpenAI-shaped last-resort 500."""

from __future__ import annotations

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from backend.app import create_app
from backend.middleware import ServedByMiddleware
from backend.settings import Settings
from tests.backend.conftest import assert_openai_error
from tests.fakes.serve import serve_in_thread


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def fine(request: Request) -> Response:
    return PlainTextResponse("fine")


async def streamed(request: Request) -> Response:
    async def body():  # type: ignore[no-untyped-def]
        yield b"a"
        yield b"b"

    return StreamingResponse(body())


def make_app() -> Starlette:
    app = Starlette(
        routes=[Route("/broken", broken), Route("/fine", fine), Route("/streamed", streamed)],
        middleware=[Middleware(ServedByMiddleware)],
    )
    app.state.served_by = b"pod-7"
    return app


def test_header_on_plain_streamed_and_failed_responses() -> None:
    with serve_in_thread(make_app()) as url:
        ok = httpx2.get(url + "/fine")
        streamed_response = httpx2.get(url + "/streamed")
        failed = httpx2.get(url + "/broken")
    assert ok.headers["x-served-by"] == "pod-7"
    assert streamed_response.text == "ab"
    assert streamed_response.headers["x-served-by"] == "pod-7"
    assert failed.status_code == 500
    assert failed.headers["x-served-by"] == "pod-7"
    assert assert_openai_error(failed.json())["code"] == "internal_error"


def test_a_bug_in_the_backend_app_is_an_openai_500_with_the_header() -> None:
    app = create_app(Settings(pod_name="pod-8"))
    app.router.routes.append(Route("/broken", broken))
    with serve_in_thread(app, lifespan="on") as url:
        failed = httpx2.get(url + "/broken")
    assert failed.status_code == 500
    assert failed.headers["x-served-by"] == "pod-8"
    assert failed.headers["content-type"] == "application/json"
    assert assert_openai_error(failed.json())["code"] == "internal_error"
