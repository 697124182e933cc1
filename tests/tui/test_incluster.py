"""The cockpit in a pod: with no kubeconfig, `load_target` reads the in-cluster configuration
(the pod's ServiceAccount files and `KUBERNETES_SERVICE_*`) with the kubernetes package's own
loader, as kubectl does; a kubeconfig, when there is one, still wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from tui.cluster.incluster import IN_CLUSTER_CONTEXT, SERVICEACCOUNT_DIR_ENV
from tui.cluster.kubeconfig import KubeconfigError, load_target

TOKEN = "in-cluster-token-abc"


@pytest.fixture
def pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pod's environment: the ServiceAccount's files, the API server's address, no kubeconfig."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(TOKEN)
    trustme.CA().cert_pem.write_to_path(str(folder / "ca.crt"))
    (folder / "namespace").write_text("team-a\n")
    monkeypatch.setenv(SERVICEACCOUNT_DIR_ENV, str(folder))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return folder


def test_a_pod_without_kubeconfig_uses_its_service_account(pod: Path) -> None:
    """The API server from the environment, the namespace and token from the files."""
    target = load_target(None, None, None)
    assert target.context == IN_CLUSTER_CONTEXT
    assert target.server == "https://10.96.0.1:443"
    assert target.namespace == "team-a"
    assert not target.sandbox
    assert target.auth_headers() == {"Authorization": f"bearer {TOKEN}"}
    assert target.credentials.configuration.ssl_ca_cert == str(pod / "ca.crt")
    assert TOKEN not in repr(target)  # T6
    assert load_target(None, None, "other").namespace == "other"


def test_a_kubeconfig_still_wins_in_a_pod(pod: Path, tmp_path: Path) -> None:
    """With ~/.kube/config present, the pod's ServiceAccount is not used (kubectl's order)."""
    config = tmp_path / "home" / ".kube" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("apiVersion: v1\nkind: Config\ncontexts: []\nclusters: []\n")
    with pytest.raises(KubeconfigError, match="no current context"):
        load_target(None, None, None)


@pytest.mark.parametrize("missing", ["token", "ca.crt", "namespace"])
def test_a_missing_service_account_file_is_a_plain_error(pod: Path, missing: str) -> None:
    """No token mounted (automountServiceAccountToken: false) and the like: a message."""
    (pod / missing).unlink()
    with pytest.raises(KubeconfigError, match="ServiceAccount cannot be used"):
        load_target(None, None, None)
