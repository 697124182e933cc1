"""Issue 14, item 4: the credentials clusters use, against the real sandbox.

The sandbox's kubeconfig has a client-certificate context (as Minikube's) and an exec-plugin
context whose tokens expire after a few seconds here (as EKS, GKE and AKS tokens do after
minutes). The cockpit's services layer (the gateway: chats, health checks, pod metrics; the
cluster watcher: lists and watches) runs on the exec context past three expiries and a
revocation; kubectl works on both contexts; an expired or revoked token is a 401 Status; the
in-cluster configuration (a pod's ServiceAccount files) reaches the API server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sandbox.harness import NAMESPACE, RunningSandbox, fake_engine_cmd, start_sandbox
from tests.tui.k8s_helpers import Recorder, watching
from tui.cluster.exec_plugin import ExecCredential, ExecPlugin
from tui.cluster.kubeconfig import in_cluster_target, load_target
from tui.core.model import ClusterSnapshot, Connection, Outcome
from tui.core.settings import CockpitSettings
from tui.services.connect import gateway_for

pytestmark = pytest.mark.slow(reason="a live sandbox and tokens that expire several times")

TOKEN_SECONDS = 4
EXEC_CONTEXT = "kube-llm-sandbox-exec"
CERT_CONTEXT = "kube-llm-sandbox-cert"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        tmp_path_factory.mktemp("credentials"),
        "--exec-token-seconds",
        str(TOKEN_SECONDS),
        engine_cmd=fake_engine_cmd(busy_ms_per_token=0),
    )
    yield running
    running.stop()


def _user(sandbox: RunningSandbox, name: str) -> dict[str, Any]:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    return dict(next(u["user"] for u in config["users"] if u["name"] == name))


def test_kubectl_works_on_the_certificate_and_exec_contexts(sandbox: RunningSandbox) -> None:
    for context in (CERT_CONTEXT, EXEC_CONTEXT):
        who = sandbox.kubectl("--context", context, "auth", "whoami", "-o", "json")
        assert who.returncode == 0, who.stderr
        info = json.loads(who.stdout)["status"]["userInfo"]
        assert info["username"] == "kube-llm-sandbox-admin"
        assert "system:masters" in info["groups"]
        pods = sandbox.kubectl("--context", context, "get", "pods", "-n", NAMESPACE)
        assert pods.returncode == 0, pods.stderr
    exec_user = _user(sandbox, EXEC_CONTEXT)["exec"]
    assert exec_user["apiVersion"] == "client.authentication.k8s.io/v1"


def _exec_token(sandbox: RunningSandbox) -> tuple[str, float]:
    spec = _user(sandbox, EXEC_CONTEXT)["exec"]
    credential = ExecPlugin(spec, sandbox.kubeconfig.parent, str(sandbox.kubeconfig)).run()
    assert credential.expires is not None
    return credential.token, credential.expires


def test_expired_and_revoked_tokens_are_401(sandbox: RunningSandbox) -> None:
    token, expires = _exec_token(sandbox)
    assert 0 < expires - time.time() <= TOKEN_SECONDS + 1
    with sandbox.http(token=token) as client:
        assert client.get(f"/api/v1/namespaces/{NAMESPACE}/pods").status_code == 200
        time.sleep(max(0.0, expires - time.time()) + 0.5)
        expired = client.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
        assert expired.status_code == 401
        assert expired.json()["reason"] == "Unauthorized"
    token, _ = _exec_token(sandbox)
    with sandbox.http() as admin:
        admin.post("/sandbox/faults", json={"revoke_tokens": True}).raise_for_status()
    with sandbox.http(token=token) as client:
        revoked = client.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
        assert revoked.status_code == 401
        assert revoked.json()["kind"] == "Status"
    with sandbox.http() as admin:
        # The kubeconfig's own token is not an issued one: it stays.
        assert admin.get(f"/api/v1/namespaces/{NAMESPACE}/pods").status_code == 200


async def test_the_cockpit_services_run_past_three_token_expiries(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []
    real_run = ExecPlugin.run

    def counted(self: ExecPlugin, stdin_available: bool = False) -> ExecCredential:
        runs.append(time.time())
        return real_run(self, stdin_available)

    monkeypatch.setattr(ExecPlugin, "run", counted)
    target = load_target(sandbox.kubeconfig, EXEC_CONTEXT, None)
    assert target.header_source() is not None
    settings = CockpitSettings()
    gateway, _ = gateway_for(target, settings)
    watcher, seen = watching(target)
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: s.connection is Connection.LIVE and s.pods, what="live")
        pod = next(p.name for p in seen.last.pods if p.ready)
        deadline = time.time() + 3.5 * TOKEN_SECONDS
        rounds = 0
        while time.time() < deadline or rounds < 4:
            rounds += 1
            assert (await gateway.health()).ok
            chat = await gateway.chat([{"role": "user", "content": "hi"}], max_tokens=4)
            assert chat.outcome is Outcome.OK, chat
            metrics = await gateway.pod_metrics(pod)
            assert metrics.pod == pod
            # The watches end (as an API server ends them) and resume on a renewed token.
            with sandbox.http() as admin:
                admin.post("/sandbox/faults", json={"drop_watches": True}).raise_for_status()
            await seen.until(
                _live_after(seen, len(seen.snapshots)),
                what="live again after the watches dropped",
            )
            await asyncio.sleep(TOKEN_SECONDS / 2)
        # A revoked token: the next request gets 401, renews, and goes through.
        with sandbox.http() as admin:
            admin.post("/sandbox/faults", json={"revoke_tokens": True}).raise_for_status()
        assert (await gateway.health()).ok
        assert (await gateway.pod_metrics(pod)).pod == pod
    finally:
        task.cancel()
        await watcher.close()
        await asyncio.gather(task, return_exceptions=True)
        await gateway.aclose()
    # At least three expiries passed, each renewed once, not once per request.
    assert len(runs) >= 4, runs
    assert len(runs) <= rounds + 6, (len(runs), rounds)


async def test_the_cockpit_services_work_on_the_certificate_context(
    sandbox: RunningSandbox,
) -> None:
    target = load_target(sandbox.kubeconfig, CERT_CONTEXT, None)
    assert target.client_cert() is not None
    assert target.auth_headers() == {}
    assert target.header_source() is None
    gateway, _ = gateway_for(target, CockpitSettings())
    watcher, seen = watching(target)
    task = asyncio.create_task(watcher.run())
    try:
        await seen.until(lambda s: s.connection is Connection.LIVE and s.pods, what="live")
        pod = next(p.name for p in seen.last.pods if p.ready)
        assert (await gateway.health()).ok
        chat = await gateway.chat([{"role": "user", "content": "hi"}], max_tokens=4)
        assert chat.outcome is Outcome.OK, chat
        assert (await gateway.pod_metrics(pod)).pod == pod
    finally:
        task.cancel()
        await watcher.close()
        await asyncio.gather(task, return_exceptions=True)
        await gateway.aclose()


def _live_after(seen: Recorder, count: int) -> Callable[[ClusterSnapshot], bool]:
    """Live, once more than `count` snapshots came."""

    def newer_and_live(snapshot: ClusterSnapshot) -> bool:
        return len(seen.snapshots) > count and snapshot.connection is Connection.LIVE

    return newer_and_live


def test_in_cluster_configuration_reaches_the_api_server(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(_user(sandbox, "kube-llm-sandbox-cockpit")["token"])
    (folder / "ca.crt").write_bytes(
        base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    (folder / "namespace").write_text(NAMESPACE)
    host, port = sandbox.server.removeprefix("https://").split(":")
    environ = {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBE_LLM_SERVICEACCOUNT_DIR": str(folder),
    }
    target = in_cluster_target(None, environ)
    assert target.namespace == NAMESPACE
    assert target.server == sandbox.server
    assert not target.sandbox

    async def list_pods() -> int:
        from kubernetes.aio.client import CoreV1Api

        async with target.api_client() as api:
            pods = await CoreV1Api(api).list_namespaced_pod(NAMESPACE)
            return len(pods.items)

    assert asyncio.run(list_pods()) >= 1
    with pytest.raises(Exception, match="not in a cluster"):
        in_cluster_target(None, {"KUBE_LLM_SERVICEACCOUNT_DIR": str(folder)})
