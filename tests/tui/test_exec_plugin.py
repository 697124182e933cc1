"""Exec credential plugins, run and kept as client-go does (`tui.cluster.exec_plugin`,
`tui.cluster.credentials`).

Real plugin processes (a small Python script written per test, which counts its runs, records
the `KUBERNETES_EXEC_INFO` it was given and prints `tok-<run>`), real kubeconfig files, and for
the 401 renewal a real API stand-in on loopback that accepts only some tokens, reached through
the `kubernetes.aio` client the cockpit's watcher uses. The sandbox's own exec context is run
past three expiries in `test_credentials.py`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.aio.client import CoreV1Api
from kubernetes.aio.client.exceptions import ApiException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.serve import serve_in_thread
from tui.cluster.errors import KubeconfigError
from tui.cluster.kubeconfig import load_target

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
ROOT = Path(__file__).resolve().parents[2]

PLUGIN = textwrap.dedent(
    """\
    import datetime, json, os, sys
    folder = os.environ["PLUGIN_STATE"]
    runs = os.path.join(folder, "runs")
    with open(runs, "a") as handle:
        handle.write("run\\n")
    with open(runs) as handle:
        count = len(handle.read().splitlines())
    with open(os.path.join(folder, "info-%d.json" % count), "w") as handle:
        handle.write(os.environ.get("KUBERNETES_EXEC_INFO", ""))
    status = {"token": os.environ.get("PLUGIN_PREFIX", "tok-") + str(count)}
    seconds = os.environ.get("PLUGIN_EXPIRES")
    if seconds:
        ends = datetime.datetime.now(datetime.timezone.utc)
        ends += datetime.timedelta(seconds=float(seconds))
        status["expirationTimestamp"] = ends.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    version = os.environ.get("PLUGIN_VERSION", "client.authentication.k8s.io/v1")
    print(json.dumps({"apiVersion": version, "kind": "ExecCredential", "status": status}))
    """
)


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read the machine's own kubeconfig."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


class Plugin:
    """The plugin's folder: its script, and what its runs left there."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.script = folder / "plugin.py"
        self.script.write_text(PLUGIN)

    @property
    def runs(self) -> int:
        path = self.folder / "runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def info(self, run: int) -> dict[str, Any]:
        """The KUBERNETES_EXEC_INFO that run number `run` was given."""
        loaded: dict[str, Any] = json.loads((self.folder / f"info-{run}.json").read_text())
        return loaded


@pytest.fixture
def plugin(tmp_path: Path) -> Plugin:
    return Plugin(tmp_path / "plugin")


def _kubeconfig(
    path: Path,
    plugin: Plugin,
    server: str = "https://10.0.0.1:6443",
    env: dict[str, str] | None = None,
    cluster: dict[str, Any] | None = None,
    **exec_fields: Any,
) -> Path:
    """A kubeconfig whose one context's user runs `plugin`."""
    variables = {"PLUGIN_STATE": str(plugin.folder), **(env or {})}
    spec: dict[str, Any] = {
        "apiVersion": V1,
        "command": sys.executable,
        "args": [str(plugin.script)],
        "env": [{"name": name, "value": value} for name, value in variables.items()],
        "interactiveMode": "Never",
        **exec_fields,
    }
    spec = {key: value for key, value in spec.items() if value is not None}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "work",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": {"exec": spec}}],
        "contexts": [{"name": "work", "context": {"cluster": "c", "user": "u"}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_it_runs_once_at_load_and_the_token_is_kept_until_it_expires(
    tmp_path: Path, plugin: Plugin
) -> None:
    # 4 minutes: inside the five minutes in which the `kubernetes` package would run the
    # plugin before every request.
    config = _kubeconfig(tmp_path / "config", plugin, env={"PLUGIN_EXPIRES": "240"})
    target = load_target(config, None, None)
    source = target.header_source()
    assert source is not None
    assert plugin.runs == 1
    for _ in range(5):
        assert target.auth_headers() == {"Authorization": "Bearer tok-1"}
        assert source.headers() == {"Authorization": "Bearer tok-1"}
    assert plugin.runs == 1

    short = _kubeconfig(tmp_path / "short", plugin, env={"PLUGIN_EXPIRES": "1"})
    target = load_target(short, None, None)
    assert target.auth_headers() == {"Authorization": "Bearer tok-2"}
    time.sleep(1.2)
    assert target.auth_headers() == {"Authorization": "Bearer tok-3"}
    assert target.auth_headers() == {"Authorization": "Bearer tok-3"}
    assert plugin.runs == 3


def test_a_401_renews_once_for_all_the_requests_refused_with_that_token(
    tmp_path: Path, plugin: Plugin
) -> None:
    target = load_target(_kubeconfig(tmp_path / "config", plugin), None, None)
    source = target.header_source()
    assert source is not None
    refused = source.headers()
    for _ in range(3):  # three requests in flight with tok-1 were all refused
        source.invalidate(refused)
        assert source.headers() == {"Authorization": "Bearer tok-2"}
    assert plugin.runs == 2
    source.invalidate({"Authorization": "Bearer something-else"})  # not the cached one
    assert source.headers() == {"Authorization": "Bearer tok-2"}
    assert plugin.runs == 2


@pytest.fixture
def api_server() -> Iterator[tuple[str, set[str], list[str]]]:
    """An API stand-in on loopback that lists pods for the `Authorization` values in the set
    it yields and answers a 401 Status to any other; it also yields the values it saw."""
    accepted: set[str] = set()
    seen: list[str] = []

    async def pods(request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization", "")
        seen.append(authorization)
        if authorization not in accepted:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
            return JSONResponse({**status, "reason": "Unauthorized", "code": 401}, 401)
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})

    app = Starlette(routes=[Route("/api/v1/namespaces/{namespace}/pods", pods)])
    with serve_in_thread(app) as url:
        yield url, accepted, seen


async def test_the_api_client_renews_a_refused_token_and_sends_again(
    tmp_path: Path, plugin: Plugin, api_server: tuple[str, set[str], list[str]]
) -> None:
    url, accepted, seen = api_server
    accepted.add("Bearer tok-2")  # tok-1, from the load, was revoked
    target = load_target(_kubeconfig(tmp_path / "config", plugin, server=url), None, None)
    async with target.api_client() as api:
        core = CoreV1Api(api)
        # Three at once, all refused with tok-1: one renewal, and each sent once more.
        lists = await asyncio.gather(*(core.list_namespaced_pod("kube-llm") for _ in range(3)))
        assert all(pods.items == [] for pods in lists)
        assert plugin.runs == 2
        assert seen.count("Bearer tok-1") == 3
        assert seen.count("Bearer tok-2") == 3
        # The watcher's raw calls too, and later requests go straight out with the new token.
        raw = await core.list_namespaced_pod_without_preload_content("kube-llm")
        assert raw.status == 200
        raw.release()
    assert seen[-1] == "Bearer tok-2"
    assert len(seen) == 7
    assert plugin.runs == 2


async def test_a_token_refused_after_renewal_is_the_callers_401(
    tmp_path: Path, plugin: Plugin, api_server: tuple[str, set[str], list[str]]
) -> None:
    url, _, seen = api_server  # it accepts no token at all
    target = load_target(_kubeconfig(tmp_path / "config", plugin, server=url), None, None)
    async with target.api_client() as api:
        with pytest.raises(ApiException) as raised:
            await CoreV1Api(api).list_namespaced_pod("kube-llm")
    assert raised.value.status == 401
    assert seen == ["Bearer tok-1", "Bearer tok-2"]  # renewed and sent once more: no loop
    assert plugin.runs == 2


def test_exec_info_says_not_interactive_and_carries_the_cluster_when_asked(
    tmp_path: Path, plugin: Plugin
) -> None:
    ca = tmp_path / "conf" / "pki" / "ca.crt"
    ca.parent.mkdir(parents=True)
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    cluster = {
        "certificate-authority": "pki/ca.crt",  # relative to the kubeconfig's folder
        "tls-server-name": "api.internal",
        "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"a": 1}}],
    }
    config = _kubeconfig(
        tmp_path / "conf" / "config",
        plugin,
        cluster=cluster,
        provideClusterInfo=True,
        interactiveMode="IfAvailable",  # and pytest's stdin is no terminal
    )
    load_target(config, None, None)
    info = plugin.info(1)
    assert info["apiVersion"] == V1
    assert info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"] == {
        "server": "https://10.0.0.1:6443",
        "tls-server-name": "api.internal",
        "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
        "config": {"a": 1},
    }
    without = _kubeconfig(tmp_path / "conf" / "plain", plugin, cluster=cluster)
    load_target(without, None, None)
    assert "cluster" not in plugin.info(2)["spec"]


def test_interactive_if_available_only_before_the_cockpit_takes_the_terminal(
    tmp_path: Path, plugin: Plugin
) -> None:
    config = _kubeconfig(
        tmp_path / "config", plugin, env={"PLUGIN_EXPIRES": "0"}, interactiveMode="IfAvailable"
    )
    # A real terminal on stdin: load (the first run) may ask the user; a renewal may not.
    script = (
        "import sys; from pathlib import Path; from tui.cluster.kubeconfig import load_target\n"
        f"target = load_target(Path({str(config)!r}), None, None)\n"
        "print(target.auth_headers())\n"
    )
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stderr
    assert "tok-2" in done.stdout
    assert plugin.info(1)["spec"]["interactive"] is True
    assert plugin.info(2)["spec"]["interactive"] is False


def test_a_relative_command_runs_from_the_kubeconfigs_folder(
    tmp_path: Path, plugin: Plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "conf" / "bin" / "get-token"
    tool.parent.mkdir(parents=True)
    tool.write_text(f"#!{sys.executable}\n{PLUGIN}")
    tool.chmod(0o755)
    config = _kubeconfig(
        tmp_path / "conf" / "config",
        plugin,
        env={"PLUGIN_PREFIX": "from-env-"},
        command="bin/get-token",
        args=[],
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: bin/get-token is not here
    assert load_target(config, None, None).auth_headers() == {"Authorization": "Bearer from-env-1"}


BROKEN = {
    "exits": ("import sys; print('login expired', file=sys.stderr); sys.exit(3)", "exited 3: "),
    "no-json": ("print('token: abc')", "printed something other than JSON"),
    "not-a-credential": ("print('{}')", "not an ExecCredential"),
    "other-version": (
        "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1',"
        " 'kind': 'ExecCredential', 'status': {'token': 't'}}))",
        "the kubeconfig asks for client.authentication.k8s.io/v1",
    ),
    "no-token": (
        "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': {}}))",
        "without a token",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_failing_plugin_is_an_error_naming_the_kubeconfig_and_user(
    tmp_path: Path, plugin: Plugin, case: str
) -> None:
    code, expected = BROKEN[case]
    config = _kubeconfig(tmp_path / "config", plugin, args=["-c", code])
    with pytest.raises(KubeconfigError) as raised:
        load_target(config, None, None)
    message = str(raised.value)
    assert str(config) in message
    assert "user 'u'" in message
    assert expected in message
    if case == "exits":
        assert "login expired" in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"interactiveMode": None}, "interactiveMode must be one of"),
        ({"interactiveMode": "Sometimes"}, "not 'Sometimes'"),
        ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "apiVersion"),
        ({"command": "/no/such/plugin", "args": []}, "/no/such/plugin was not found"),
        ({"interactiveMode": "Always"}, "needs a terminal (interactiveMode: Always)"),
    ],
)
def test_a_misconfigured_plugin_is_an_error_naming_the_kubeconfig(
    tmp_path: Path, plugin: Plugin, fields: dict[str, Any], expected: str
) -> None:
    config = _kubeconfig(tmp_path / "config", plugin, **fields)
    with pytest.raises(KubeconfigError) as raised:
        load_target(config, None, None)
    assert str(config) in str(raised.value)
    assert expected in str(raised.value)
    assert plugin.runs == 0


def test_v1beta1_defaults_to_if_available(tmp_path: Path, plugin: Plugin) -> None:
    config = _kubeconfig(
        tmp_path / "config",
        plugin,
        apiVersion=V1BETA1,
        interactiveMode=None,
        env={"PLUGIN_VERSION": V1BETA1},
    )
    assert load_target(config, None, None).auth_headers() == {"Authorization": "Bearer tok-1"}
    assert plugin.info(1)["spec"]["interactive"] is False
