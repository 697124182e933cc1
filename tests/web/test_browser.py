"""The web cockpit in a real browser: headless chromium opens the page `kube-llm web` serves
against a live sandbox (fake engine), reads the pods table from the page, takes screenshots,
types keys, and checks T1 with a reply full of HTML and markup; then the sandbox's own frontend
pods. Screenshots go to the test's folder (printed) for a person to look at."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import httpx2
import psutil
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from tests.sandbox.harness import NAMESPACE, RunningSandbox, start_sandbox, wait_for
from tests.web.browser import ACCESSIBILITY_ROWS, FIND_TERMINAL, Chromium, launch
from tests.web.harness import WebServer, gone, kill_all, start_web

pytestmark = pytest.mark.slow(reason="a live sandbox, kube-llm web and a headless chromium")

# No spaces inside a piece: the chat pane wraps a reply at spaces.
HOSTILE_PIECES = (
    "<b>bold</b>",
    "<script>alert(1)</script>",
    "[red]red[/]",
    "[@click=app.quit]click[/]",
    "https://example.com/x",
)
HOSTILE_REPLY = " ".join(HOSTILE_PIECES)
ENGINE = (
    "python -m tests.fakes.engine --host 127.0.0.1 --port {port} --model {model} "
    f"--reply {shlex.quote(HOSTILE_REPLY)}"
)
ROWS = (
    f"() => Array.from(document.querySelectorAll('{ACCESSIBILITY_ROWS}')).map(d => d.textContent)"
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One sandbox (fake engine with a hostile reply) for the module."""
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), engine_cmd=ENGINE)
    yield running
    running.stop()


def web_command(sandbox: RunningSandbox, *extra: str) -> list[str]:
    """`kube-llm web` on the sandbox as the cockpit's ServiceAccount."""
    return [
        sys.executable,
        "-m",
        "tui",
        "web",
        "--kubeconfig",
        str(sandbox.kubeconfig),
        "--context",
        "kube-llm-sandbox-cockpit",
        *extra,
    ]


@pytest.fixture
def web(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[WebServer]:
    """`kube-llm web` for one test; stopped after it, and nothing left behind."""
    server = start_web(web_command(sandbox, "--heartbeat", "2"), tmp_path)
    yield server
    pids = [p.pid for p in server.sessions()]
    assert server.stop() == 0, server.log()
    wait_for(lambda: gone(pids), 15, "every session gone with the server")


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page in a fresh headless chromium."""
    browser_process = launch(tmp_path / "chromium")
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.connect_over_cdp(browser_process.endpoint)
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.add_init_script(FIND_TERMINAL)
            yield await context.new_page()
            await context.close()
    finally:
        browser_process.stop()


async def rows(page: Page) -> list[str]:
    """The terminal's rows as the page's accessibility tree has them."""
    found: list[str] = await page.evaluate(ROWS)
    return found


async def wait_for_rows(
    page: Page, holds: Callable[[list[str]], bool], what: str, timeout: float = 60
) -> list[str]:
    """The rows, once `holds(rows)`."""
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while time.monotonic() < deadline:
        shown = await rows(page)
        with contextlib.suppress(StopIteration):
            if holds(shown):
                return shown
        await page.wait_for_timeout(200)
    raise AssertionError(f"no {what} on the page after {timeout}s:\n" + "\n".join(shown))


async def wait_for_text(page: Page, *texts: str, timeout: float = 60) -> list[str]:
    """The rows, once every text is on the screen."""

    def on_screen(shown: list[str]) -> bool:
        return all(text in "\n".join(shown) for text in texts)

    return await wait_for_rows(page, on_screen, repr(texts), timeout)


def answers(url: str) -> bool:
    """Whether a web server answers its liveness path."""
    try:
        return httpx2.get(f"{url}healthz", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


def pods_table(shown: list[str]) -> list[str]:
    """The rows inside the pods table's box (from its `Pods` title to its bottom border)."""
    start = next(i for i, row in enumerate(shown) if "─ Pods" in row)
    end = next(i for i in range(start, len(shown)) if shown[i].lstrip().startswith("╰"))
    return shown[start + 1 : end]


def chat_pane(shown: list[str]) -> str:
    """The chat pane's text: the right-hand column, from its `Chat` title down."""
    start = next(i for i, row in enumerate(shown) if "╭─ Chat" in row)
    column = shown[start].index("╭─ Chat")
    return "\n".join(row[column:] for row in shown[start + 1 :])


def pod_names(shown: list[str]) -> set[str]:
    """Pod names in rows."""
    return set(re.findall(r"(llm-(?:backend|frontend)-[a-z0-9]+-[a-z0-9]+)", "\n".join(shown)))


async def open_cockpit(page: Page, url: str, pods: list[str]) -> tuple[list[str], float]:
    """Load the page and wait for the pods table to list `pods`; the rows and the seconds."""
    started = time.monotonic()
    await page.goto(url)

    def listed(shown: list[str]) -> bool:
        return set(pods) <= pod_names(pods_table(shown))

    shown = await wait_for_rows(page, listed, f"pods table with {pods}")
    return shown, time.monotonic() - started


async def test_the_page_shows_the_live_cockpit(
    sandbox: RunningSandbox, web: WebServer, page: Page, tmp_path: Path
) -> None:
    """The pods table in the page names the sandbox's backend pods; `?` typed into the page
    opens the help; the page is read-only and says so."""
    ready = sorted(sandbox.ready_pods())
    shown, seconds = await open_cockpit(page, web.url, ready)
    # The pods panel shows the backend Deployment's pods, and only them.
    assert sorted(pod_names(pods_table(shown))) == ready
    assert "READ-ONLY" in "\n".join(shown)
    assert await page.title() == "kube-llm cockpit · read-only: no kill, no load keys"
    await page.screenshot(path=tmp_path / "cockpit.png")
    [session] = web.sessions()
    memory = session.memory_full_info()
    await page.focus(".xterm-helper-textarea")
    await page.keyboard.press("?")
    helped = await wait_for_text(page, "this help", "write a report")
    assert "evict a pod" not in "\n".join(helped)  # read-only: no kill in the help
    await page.screenshot(path=tmp_path / "help.png")
    measured = {
        "page_load_to_pods_table_seconds": round(seconds, 2),
        "server_rss_mib": round(psutil.Process(web.process.pid).memory_info().rss / 2**20, 1),
        "session_rss_mib": round(memory.rss / 2**20, 1),
        "session_uss_mib": round(memory.uss / 2**20, 1),
        "load_average": list(psutil.getloadavg()),
    }
    print(f"\nscreenshots: {tmp_path}\nmeasured: {json.dumps(measured)}")


async def test_t1_a_reply_with_html_and_markup_shows_literally(
    sandbox: RunningSandbox, web: WebServer, page: Page, tmp_path: Path
) -> None:
    """T1 in the browser: a reply with HTML, Rich markup, a click action and a URL is shown
    as the characters it is; the page gains no element from it and cannot open the URL."""
    await open_cockpit(page, web.url, sandbox.ready_pods())
    elements_before = await page.evaluate("() => document.querySelectorAll('*').length")
    await page.focus(".xterm-helper-textarea")
    await page.keyboard.press("c")
    await page.wait_for_timeout(500)  # the chat box takes the focus
    await page.keyboard.type("hello-web", delay=50)
    await wait_for_text(page, "hello-web")
    await page.keyboard.press("Enter")
    # Every piece as typed, in the chat pane (the events show the engine's command line, reply
    # included): nothing styled, linked or run.

    def replied(shown: list[str]) -> bool:
        chat = chat_pane(shown)
        return "hello-web" in chat and all(piece in chat for piece in HOSTILE_PIECES)

    await wait_for_rows(page, replied, "the reply in the chat pane", timeout=120)
    assert await page.evaluate("() => document.querySelectorAll('b').length") == 0
    scripts = "() => Array.from(document.scripts).some(s => s.text.includes('alert(1)'))"
    assert await page.evaluate(scripts) is False
    after = await page.evaluate("() => document.querySelectorAll('*').length")
    # The accessibility tree adds rows as the screen changes; no element comes from the reply.
    assert await page.evaluate("() => document.body.innerHTML.includes('<b>bold</b>')") is False
    assert after - elements_before < 200
    assert await page.evaluate("() => window.open('https://example.com/x')") is None
    await page.screenshot(path=tmp_path / "t1.png")
    print(f"\nscreenshot: {tmp_path / 't1.png'}")


async def test_a_vanished_browser_leaves_no_process(
    sandbox: RunningSandbox, web: WebServer, tmp_path: Path
) -> None:
    """A browser that stops answering (SIGSTOP: its socket stays open) loses its session's
    cockpit within the heartbeat and the grace period; one killed outright too."""
    for way in (signal.SIGSTOP, signal.SIGKILL):
        browser: Chromium = launch(tmp_path / f"chromium-{way.name}")
        pids: list[int] = []
        try:
            async with async_playwright() as playwright:
                connected = await playwright.chromium.connect_over_cdp(browser.endpoint)
                context = await connected.new_context()
                await context.add_init_script(FIND_TERMINAL)
                page = await context.new_page()
                await open_cockpit(page, web.url, sandbox.ready_pods())
                pids = [p.pid for p in web.sessions()]
                assert len(pids) == 1
                # Every process of the browser: its network service answers pings otherwise.
                for process in [*psutil.Process(browser.process.pid).children(True)]:
                    process.send_signal(way)
                browser.process.send_signal(way)
                wait_for(partial(gone, list(pids)), 30, f"the session's cockpit after {way.name}")
        finally:
            kill_all(pids)
            browser.stop()


async def test_the_frontend_pods_serve_the_cockpit(
    sandbox: RunningSandbox, page: Page, tmp_path: Path
) -> None:
    """The sandbox runs the frontend pods: 4 pods and 6 containers; a frontend pod's page shows
    the cockpit as the pod's ServiceAccount (in-cluster); a deleted one is replaced and its
    replacement's page works."""

    def frontend_urls() -> dict[str, str]:
        found = re.findall(
            r"pod (llm-frontend-\S+): the web cockpit of this pod is on (\S+) ", sandbox.log()
        )
        return dict(found)

    def running_pods() -> str | None:
        listed = sandbox.kubectl("get", "pods", "-n", NAMESPACE, "--no-headers").stdout
        return listed if listed.count("Running") == 4 else None

    listing = wait_for(running_pods, 90, "4 Running pods")
    lines = listing.splitlines()
    assert len(lines) == 4
    assert sum(int(line.split()[1].split("/")[1]) for line in lines) == 6
    backends = sorted(sandbox.ready_pods())
    frontends = wait_for(lambda: frontend_urls() if len(frontend_urls()) == 2 else None, 60, "URLs")
    (doomed, _), (_, url) = sorted(frontends.items())
    shown, _ = await open_cockpit(page, url, backends)
    screen = "\n".join(shown)
    assert "in-cluster" in screen  # the pod's own ServiceAccount, no kubeconfig
    assert "READ-ONLY" in screen
    await page.screenshot(path=tmp_path / "frontend.png")
    deleted = sandbox.kubectl("delete", "pod", doomed, "-n", NAMESPACE, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    replaced = wait_for(
        lambda: [n for n in frontend_urls() if n not in frontends] or None, 60, "a replacement"
    )
    # The frontend pods' events show in the cockpit's events, live.
    await wait_for_text(page, doomed, replaced[0])
    await page.screenshot(path=tmp_path / "frontend-events.png")
    new_url = frontend_urls()[replaced[0]]
    wait_for(lambda: answers(new_url), 60, "the replacement's web page")
    await open_cockpit(page, new_url, backends)
    await page.screenshot(path=tmp_path / "frontend-replacement.png")
    print(f"\nscreenshots: {tmp_path}")


def frontend_sessions(sandbox: RunningSandbox) -> dict[str, int]:
    """Each frontend pod's running sessions, from its own `/healthz` (the pods' own URLs)."""
    found = re.findall(
        r"pod (llm-frontend-\S+): the web cockpit of this pod is on (\S+) ", sandbox.log()
    )
    running = set(sandbox.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name").stdout.split())
    sessions: dict[str, int] = {}
    for pod, url in found:
        if f"pod/{pod}" in running:
            with contextlib.suppress(httpx2.HTTPError, ValueError):
                sessions[pod] = int(httpx2.get(f"{url}healthz", timeout=2).json()["sessions"])
    return sessions


async def still_the_old_page(page: Page) -> bool:
    """Whether the page loaded before the delete is still there (False once it navigates)."""
    try:
        return bool(await page.evaluate("() => window.__beforeDelete === true"))
    except PlaywrightError:  # the page navigated while asked
        return False


async def test_the_service_address_survives_a_deleted_frontend_pod(
    sandbox: RunningSandbox, page: Page, tmp_path: Path
) -> None:
    """The page opened at the frontend Service's address (the sandbox's stand-in for
    `kubectl port-forward svc/llm-frontend`) reconnects when the pod serving it is deleted:
    it comes back by itself with the pods table, served by another, live frontend pod."""
    found = re.search(
        r"web cockpit:\s+(http://127\.0\.0\.1:\d+/) \(Service llm-frontend", sandbox.log()
    )
    assert found, sandbox.log()
    url = found.group(1)
    wait_for(lambda: len(frontend_sessions(sandbox)) == 2 or None, 90, "2 frontend pods")
    wait_for(lambda: answers(url), 60, "the Service's address to answer")
    backends = sorted(sandbox.ready_pods())
    await open_cockpit(page, url, backends)
    [serving] = wait_for(
        lambda: [pod for pod, count in frontend_sessions(sandbox).items() if count] or None,
        30,
        "the pod serving the page",
    )
    await page.evaluate("() => { window.__beforeDelete = true; }")
    await page.screenshot(path=tmp_path / "service-before.png")
    deleted = sandbox.kubectl("delete", "pod", serving, "-n", NAMESPACE, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    # The page says it reconnects, then reloads by itself (the marker is gone with the old page).
    deadline = time.monotonic() + 90
    notice = ""
    while await still_the_old_page(page):
        assert time.monotonic() < deadline, "the page did not reload after its pod went away"
        with contextlib.suppress(PlaywrightError):
            said = await page.text_content(".closed-dialog .message", timeout=1000) or ""
            if "Reconnecting in" in said and not notice:
                notice = said
                await page.screenshot(path=tmp_path / "service-reconnecting.png")
        await page.wait_for_timeout(100)
    await page.wait_for_load_state()
    # The pod's server said it was going away (1001), which is what the page reconnects on.
    assert "websocket code 1001" in notice, notice

    def listed(shown: list[str]) -> bool:
        return set(backends) <= pod_names(pods_table(shown))

    shown = await wait_for_rows(page, listed, "the pods table after the reconnect", timeout=90)
    assert "Session ended" not in "\n".join(shown)
    await page.screenshot(path=tmp_path / "service-after.png")
    serving_now = wait_for(
        lambda: [pod for pod, count in frontend_sessions(sandbox).items() if count] or None,
        30,
        "the pod serving the page now",
    )
    assert serving not in serving_now
    print(f"\nscreenshots: {tmp_path}; served by {serving}, then by {serving_now}")


async def test_a_cockpit_quit_on_purpose_stays_ended(
    sandbox: RunningSandbox, web: WebServer, page: Page
) -> None:
    """`q` in the page ends the session with 1000: the page says "Session ended" and does not
    reconnect (only a server going away or a dropped connection does)."""
    await open_cockpit(page, web.url, sandbox.ready_pods())
    await page.focus(".xterm-helper-textarea")
    await page.keyboard.press("q")
    wait_for(lambda: not web.sessions(), 30, "the session's cockpit to end")
    await page.wait_for_function("() => document.body.classList.contains('-closed')")
    await page.wait_for_timeout(3000)  # longer than the first back-off
    assert await page.evaluate("() => window.__kubeLlmClose") == 1000
    assert await page.text_content(".closed-dialog .message") == "Session ended."
