"""`kube-llm web`: the cockpit served to browsers with textual-serve, one process per session.

`CockpitServer` is textual-serve's `Server` with what a shared deployment needs on top:

- every session's cockpit is started without a shell and reaped: asked to quit, SIGKILLed with
  its process group after a grace period (`tui.web.sessions`), when the browser leaves, when a
  browser stops answering pings (a socket left open by a vanished browser), and when the server
  stops;
- at most `max_sessions` at once: past that the page and the websocket say so (HTTP 503), and
  `/readyz` turns 503 so a Service sends new browsers to another pod;
- only what it serves: the page, its websocket, textual-serve's static files (no folder
  listings), `/healthz` and `/readyz`; anything else is a 404. No downloads: the cockpit
  delivers none;
- the websocket only from the page's own origin (a site in another tab cannot drive the
  cockpit), and, bound to loopback, only for a loopback host name (no DNS rebinding);
- page URLs from the request, so the page works behind `kubectl port-forward` or an Ingress.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, web
from textual_serve.server import Server, to_int

from tui.web.reconnect import ENDED_BY_THE_APP, RECONNECT_SCRIPT, SERVER_GOING_AWAY
from tui.web.sessions import DEFAULT_GRACE_SECONDS, ReapedSession

log = logging.getLogger("kube-llm.web")

DEFAULT_MAX_SESSIONS = 8
DEFAULT_HEARTBEAT_SECONDS = 15.0
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """Whether a host name or address only reaches this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def full_page(max_sessions: int, mode: str) -> str:
    """The page a browser gets when every session is taken."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>kube-llm cockpit: all sessions in use</title></head>
<body style="background:#0c181f;color:#e0e0e0;font-family:monospace;padding:2em">
<h1>kube-llm cockpit: all {max_sessions} sessions are in use</h1>
<p>Each browser session runs a cockpit process on this server, and this server runs at most
{max_sessions} at once. Close a cockpit tab you no longer watch, or try again in a minute.</p>
<p>Mode: {html.escape(mode)}</p>
<p><a href="/" style="color:#8cf">Try again</a></p>
</body></html>
"""


PAGE_GUARD = (
    "<title>{title}</title><script>window.open = () => null;</script>"
    + RECONNECT_SCRIPT.replace("{", "{{").replace("}", "}}")
)
"""Added to textual-serve's page: a title that says the mode, no `window.open`, and the
reconnect (`tui.web.reconnect`). xterm.js's link add-on (which textual-serve loads) opens any
URL a click lands on in the terminal's text, model replies included; with `window.open` gone a
reply's URL is inert text, as in a terminal (T1). The cockpit itself opens no URLs."""


def with_page_guard(page: str, title: str) -> str:
    """textual-serve's rendered page with `PAGE_GUARD` at the start of its head."""
    guard = PAGE_GUARD.format(title=html.escape(title))
    head, found, rest = page.partition("<head>")
    if not found:
        raise ValueError("textual-serve's page has no <head>: its template changed")
    return f"{head}<head>{guard}{rest}"


@web.middleware
async def folders_are_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A static folder is a 404, like any path not served (aiohttp says 403 for folders)."""
    try:
        return await handler(request)
    except web.HTTPForbidden:
        if request.path.startswith("/static"):
            raise web.HTTPNotFound() from None
        raise


class CockpitServer(Server):
    """textual-serve's server with reaped sessions, a session cap and only its own paths."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        mode: str = "read-only",
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        super().__init__(" ".join(argv), host=host, port=port, title=f"kube-llm cockpit · {mode}")
        self.argv = tuple(argv)
        self.mode = mode
        self.max_sessions = max_sessions
        self.grace_seconds = grace_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sessions: set[ReapedSession] = set()
        """The sessions running now (each one cockpit process)."""
        self.stopping = False
        """The server is stopping: sessions end with "going away", and the page reconnects."""

    # -- set-up ---------------------------------------------------------------------------------

    def initialize_logging(self) -> None:
        """Plain log lines on stderr (textual-serve's are Rich's, with locals in tracebacks)."""
        logging.basicConfig(
            level=logging.DEBUG if self.debug else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
        # One line per request, probes included, says nothing a session's own lines do not.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def _make_app(self) -> web.Application:
        """The routes this server serves; anything else is aiohttp's 404."""
        app = web.Application(middlewares=[folders_are_not_found])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/healthz", self.handle_healthz),
                web.get("/readyz", self.handle_readyz),
                web.static("/static", self.statics_path, show_index=False, name="static"),
            ]
        )
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """Say where the page is."""
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        print(
            f"kube-llm web: the cockpit on http://{shown}:{self.port}/ "
            f"({self.mode}; at most {self.max_sessions} sessions; Ctrl+C stops)",
            flush=True,
        )

    async def on_shutdown(self, app: web.Application) -> None:
        """Reap every session's cockpit before the server goes; their pages reconnect."""
        self.stopping = True
        await self.stop_sessions()

    async def stop_sessions(self) -> None:
        """Stop every running session (quit, then SIGKILL after the grace period)."""
        await asyncio.gather(*(session.stop() for session in list(self.sessions)))

    # -- checks ---------------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Every session is taken."""
        return len(self.sessions) >= self.max_sessions

    def _host_allowed(self, request: web.Request) -> bool:
        """Bound to loopback, only loopback host names (a DNS-rebound name is refused)."""
        if not is_loopback(self.host):
            return True
        return is_loopback(urlsplit(f"//{request.host}").hostname or "")

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A websocket from the page's own origin (browsers always send Origin on one)."""
        origin = request.headers.get("Origin")
        return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()

    # -- handlers -------------------------------------------------------------------------------

    async def handle_healthz(self, request: web.Request) -> web.Response:
        """Liveness: the server answers."""
        return web.json_response({"status": "ok", "sessions": len(self.sessions)})

    async def handle_readyz(self, request: web.Request) -> web.Response:
        """Readiness: a session can be started here (503 at the cap)."""
        body = {"sessions": len(self.sessions), "max_sessions": self.max_sessions}
        return web.json_response(body, status=503 if self.full else 200)

    async def handle_index(self, request: web.Request) -> web.Response:
        """textual-serve's page, with URLs from the request; a page that says so at the cap."""
        if not self._host_allowed(request):
            raise web.HTTPForbidden(text="kube-llm web: this host name is not served here\n")
        if self.full:
            return web.Response(
                text=full_page(self.max_sessions, self.mode),
                status=503,
                content_type="text/html",
                headers={"Retry-After": "30"},
            )
        forwarded_https = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        scheme = "wss" if request.secure or forwarded_https else "ws"
        context: dict[str, Any] = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{scheme}://{request.host}/ws",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }
        response = aiohttp_jinja2.render_template("app_index.html", request, context)
        response.text = with_page_guard(response.text or "", self.title)
        return response

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Run one cockpit for one browser, and reap it however the browser leaves."""
        if not self._host_allowed(request) or not self._same_origin(request):
            raise web.HTTPForbidden(text="kube-llm web: not from this page's origin\n")
        websocket = web.WebSocketResponse(heartbeat=self.heartbeat_seconds)
        await websocket.prepare(request)
        if self.full:
            notice = f"kube-llm web: all {self.max_sessions} sessions are in use; try later.\r\n"
            await websocket.send_bytes(notice.encode())
            await websocket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"sessions full")
            return websocket

        async def close() -> None:
            await websocket.close(code=self._close_code())

        session = ReapedSession(
            self.argv,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=close,
            download_manager=self.download_manager,
            grace_seconds=self.grace_seconds,
        )
        self.sessions.add(session)
        try:
            width = to_int(request.query.get("width", "80"), 80)
            height = to_int(request.query.get("height", "24"), 24)
            await session.start(width, height)
            if not self.stopping:  # a session that started while the server stops ends now
                await self._process_messages(websocket, session)
        except (ValueError, TypeError, AssertionError, KeyError, IndexError) as error:
            # textual-serve reads each message as a JSON list: anything else ends the session.
            log.warning("session %s: malformed message (%s)", session.app_service_id[:8], error)
        except ConnectionError as error:
            log.info("session %s: the browser left (%s)", session.app_service_id[:8], error)
        finally:
            # The session stays counted until its cockpit is reaped; a cancelled handler (the
            # server stopping) leaves the reaping to finish, and `on_shutdown` waits for it.
            stopping = asyncio.ensure_future(session.stop())
            stopping.add_done_callback(lambda _: self.sessions.discard(session))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stopping)
            if not websocket.closed:
                await websocket.close(code=self._close_code())
        return websocket

    def _close_code(self) -> int:
        """1001 while the server stops (the page reconnects), else 1000 (the session ended)."""
        return SERVER_GOING_AWAY if self.stopping else ENDED_BY_THE_APP
