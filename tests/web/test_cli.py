"""`kube-llm web` on the command line: read-only unless --allow-chaos (and the page says which),
a warning when bound beyond loopback, plain messages for bad flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.sandbox.harness import ROOT
from tests.web.harness import start_web
from tui.cli.main import build_parser, settings_from
from tui.cli.web import cockpit_argv

KUBE_LLM = [sys.executable, "-m", "tui"]


def argv_for(*flags: str) -> list[str]:
    """The command each session of `kube-llm web FLAGS` runs."""
    parsed = build_parser().parse_args(["web", *flags])
    return cockpit_argv(settings_from(parsed))


def test_sessions_are_read_only_unless_chaos_is_allowed() -> None:
    """T2 on the web: `--read-only` unless `--allow-chaos`; `--read-only` wins over both."""
    assert argv_for()[-1] == "--read-only"
    assert "--read-only" not in argv_for("--allow-chaos")
    assert argv_for("--allow-chaos", "--read-only")[-1] == "--read-only"
    flags = argv_for(
        "--context", "c", "-n", "ns", "--backend-url", "http://b:80", "--burst-users", "3"
    )
    assert flags[:4] == [sys.executable, "-m", "tui", "tui"]
    assert flags[4:10] == ["--context", "c", "--namespace", "ns", "--backend-url", "http://b:80"]
    assert "3" in flags


@pytest.mark.slow(reason="starts kube-llm web as a process")
@pytest.mark.parametrize(
    ("flags", "title"),
    [((), "read-only: no kill, no load keys"), (("--allow-chaos",), "chaos and load keys ON")],
)
def test_the_page_says_the_mode(tmp_path: Path, flags: tuple[str, ...], title: str) -> None:
    """The page's title says whether the cockpits may kill pods and send load."""
    server = start_web([*KUBE_LLM, "web", *flags], tmp_path)
    try:
        page = httpx2.get(server.url, timeout=10)
        assert f"<title>kube-llm cockpit · {title}</title>" in page.text
    finally:
        assert server.stop() == 0
    assert f"kube-llm web: the cockpit on http://127.0.0.1:{server.port}/ ({title}" in server.log()


@pytest.mark.slow(reason="starts kube-llm web as a process")
def test_a_wider_bind_is_said(tmp_path: Path) -> None:
    """Bound to every interface, the server says so before it serves."""
    server = start_web([*KUBE_LLM, "web", "--host", "0.0.0.0"], tmp_path)
    try:
        assert "WARNING: listening on 0.0.0.0, beyond this machine" in server.log()
        # Bound wider, any host name may be used (a port-forward, an Ingress).
        named = httpx2.get(server.url, headers={"Host": "cockpit.example"}, timeout=10)
        assert named.status_code == 200
        assert 'data-session-websocket-url="ws://cockpit.example/ws"' in named.text
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "--port 70000: a port is 0-65535"),
        (["--max-sessions", "0"], "--max-sessions must be at least 1"),
        (["--heartbeat", "0"], "--heartbeat must be more than 0 seconds"),
    ],
)
def test_bad_flags_get_a_message(flags: list[str], message: str) -> None:
    """A message and exit code 2, never a traceback."""
    done = subprocess.run(
        [*KUBE_LLM, "web", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"kube-llm web: {message}"
