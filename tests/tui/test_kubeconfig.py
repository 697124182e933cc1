"""Loading a kubeconfig by kubectl's rules, with the `kubernetes` package's own loader.

Real files in tmp_path, a real CA and certificate (made with `cryptography` by the sandbox's
PKI helper), a real exec plugin process. The sandbox tests use the loaded target against a real
TLS API server.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.pki import make_pki
from tui.cluster.kubeconfig import (
    DEFAULT_NAMESPACE,
    ClusterTarget,
    KubeconfigError,
    is_sandbox,
    kubeconfig_paths,
    load_target,
)

TOKEN = "s3cr3t-token-that-must-never-show"


def _config(
    contexts: dict[str, dict[str, Any]],
    current: str | None = None,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    clusters = clusters or {
        "c": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}
    }
    users = users or {"u": {"token": TOKEN}}
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
    }
    if current is not None:
        config["current-context"] = current
    return config


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _simple(tmp_path: Path, **context: Any) -> Path:
    return _write(
        tmp_path / "config",
        _config({"work": {"cluster": "c", "user": "u", **context}}, current="work"),
    )


@pytest.fixture(autouse=True)
def _no_ambient_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read the machine's own kubeconfig."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_a_bearer_token_goes_into_the_headers_and_the_client(tmp_path: Path) -> None:
    target = load_target(_simple(tmp_path), None, None)
    assert (target.context, target.server) == ("work", "https://10.0.0.1:6443")
    assert target.auth_headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert target.client_cert() is None
    configuration = target.configuration()
    assert configuration.host == "https://10.0.0.1:6443"
    assert configuration.api_key["BearerToken"] == f"Bearer {TOKEN}"


def test_a_token_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file")
    path = _write(
        tmp_path / "config",
        _config(
            {"work": {"cluster": "c", "user": "u"}},
            current="work",
            users={"u": {"tokenFile": str(tmp_path / "token")}},
        ),
    )
    assert load_target(path, None, None).auth_headers() == {"Authorization": "Bearer from-a-file"}


def test_str_and_repr_never_show_the_token(tmp_path: Path) -> None:
    target = load_target(_simple(tmp_path), None, None)
    shown = [
        str(target),
        repr(target),
        f"{target}",
        repr(target.credentials),
        str(target.credentials),
        str(dataclasses.asdict(target)),
        repr(load_target(_simple(tmp_path), None, "other")),
    ]
    for text in shown:
        assert TOKEN not in text
    assert "work" in repr(target)  # it still says what it is


def test_an_exec_plugin_provides_the_token(tmp_path: Path) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "from-the-plugin"},
    }
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
        "interactiveMode": "Never",
    }
    path = _write(
        tmp_path / "config",
        _config(
            {"work": {"cluster": "c", "user": "u"}}, current="work", users={"u": {"exec": plugin}}
        ),
    )
    assert load_target(path, None, None).auth_headers() == {
        "Authorization": "Bearer from-the-plugin"
    }


@pytest.fixture
def pki(tmp_path: Path) -> Any:
    """A CA and a certificate with its key (used here as a client certificate)."""
    return make_pki(tmp_path / "pki")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _ca_subjects(context: ssl.SSLContext) -> list[Any]:
    return [entry["subject"] for entry in context.get_ca_certs()]


def test_ca_data_and_a_relative_ca_file_trust_the_same_ca(tmp_path: Path, pki: Any) -> None:
    server = "https://127.0.0.1:6443"
    with_data = _write(
        tmp_path / "data.yaml",
        _config(
            {"work": {"cluster": "c", "user": "u"}},
            current="work",
            clusters={"c": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}},
        ),
    )
    # kubectl resolves a relative path against the kubeconfig's own folder.
    with_file = _write(
        tmp_path / "file.yaml",
        _config(
            {"work": {"cluster": "c", "user": "u"}},
            current="work",
            clusters={"c": {"server": server, "certificate-authority": "pki/ca.crt"}},
        ),
    )
    from_data = load_target(with_data, None, None).ssl_context()
    from_file = load_target(with_file, None, None).ssl_context()
    assert _ca_subjects(from_data) == _ca_subjects(from_file)
    assert len(_ca_subjects(from_data)) == 1
    for context in (from_data, from_file):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname


def test_insecure_skip_tls_verify_turns_verification_off(tmp_path: Path) -> None:
    context = load_target(_simple(tmp_path), None, None).ssl_context()
    assert context.verify_mode is ssl.CERT_NONE
    assert not context.check_hostname


def test_a_client_certificate_from_data(tmp_path: Path, pki: Any) -> None:
    path = _write(
        tmp_path / "config",
        _config(
            {"work": {"cluster": "c", "user": "u"}},
            current="work",
            clusters={
                "c": {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": _b64(pki.ca_cert),
                }
            },
            users={
                "u": {
                    "client-certificate-data": _b64(pki.server_cert),
                    "client-key-data": _b64(pki.server_key),
                }
            },
        ),
    )
    target = load_target(path, None, None)
    assert target.auth_headers() == {}
    cert = target.client_cert()
    assert cert is not None
    assert Path(cert[0]).read_bytes() == pki.server_cert.read_bytes()
    assert Path(cert[1]).read_bytes() == pki.server_key.read_bytes()
    target.ssl_context()  # loads the chain: a mismatched key or bad PEM would raise here


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config"
    with pytest.raises(KubeconfigError, match=f"kubeconfig file not found: {missing}"):
        load_target(missing, None, None)


def test_without_any_kubeconfig_the_default_location_is_named(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as error:
        load_target(None, None, None)
    assert str(tmp_path / "home" / ".kube" / "config") in str(error.value)
    assert "--kubeconfig" in str(error.value)


def test_kubeconfig_list_merges_and_the_first_current_context_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _write(
        tmp_path / "a",
        _config({"one": {"cluster": "c", "user": "u", "namespace": "ns-one"}}, current="one"),
    )
    second = _write(
        tmp_path / "b",
        _config(
            {"two": {"cluster": "d", "user": "u"}},
            current="two",
            clusters={"d": {"server": "https://10.0.0.2:6443", "insecure-skip-tls-verify": True}},
        ),
    )
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{first}:{second}")
    assert kubeconfig_paths(None) == (first, second)
    chosen = load_target(None, None, None)
    assert (chosen.context, chosen.namespace) == ("one", "ns-one")
    other = load_target(None, "two", None)
    assert other.server == "https://10.0.0.2:6443"
    assert other.kubeconfig == (first, second)


def test_kubeconfig_list_with_no_existing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'x'}:{tmp_path / 'y'}")
    with pytest.raises(KubeconfigError, match="none of the files in KUBECONFIG exist"):
        load_target(None, None, None)


def test_an_unknown_context_lists_the_ones_there(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "config",
        _config(
            {"beta": {"cluster": "c", "user": "u"}, "alpha": {"cluster": "c", "user": "u"}},
            current="alpha",
        ),
    )
    with pytest.raises(KubeconfigError) as error:
        load_target(path, "gamma", None)
    assert str(error.value) == f"context 'gamma' not found in {path}; contexts there: alpha, beta"


def test_no_current_context_asks_for_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "config", _config({"only": {"cluster": "c", "user": "u"}}))
    with pytest.raises(KubeconfigError, match=r"no current context; pass --context .*only"):
        load_target(path, None, None)


def test_a_context_naming_a_missing_cluster_says_so(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "config", _config({"work": {"cluster": "gone", "user": "u"}}, current="work")
    )
    with pytest.raises(KubeconfigError, match="names the cluster 'gone'"):
        load_target(path, None, None)


def test_malformed_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nclusters:\n  - name: c\n    cluster: {server: [unclosed\n")
    with pytest.raises(KubeconfigError) as error:
        load_target(path, None, None)
    message = str(error.value)
    assert message.startswith(f"{path}: malformed YAML at line ")
    line = int(message.split("at line ")[1].split(",")[0])
    assert 4 <= line <= 5


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("- just\n- a list\n")
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        load_target(path, None, None)


@pytest.mark.parametrize(
    ("flag", "in_context", "expected"),
    [
        ("from-flag", "from-context", "from-flag"),
        (None, "from-context", "from-context"),
        (None, None, DEFAULT_NAMESPACE),
    ],
)
def test_namespace_flag_then_context_then_kube_llm(
    tmp_path: Path, flag: str | None, in_context: str | None, expected: str
) -> None:
    extra = {"namespace": in_context} if in_context else {}
    assert load_target(_simple(tmp_path, **extra), None, flag).namespace == expected


@pytest.mark.parametrize("bad", ["Kube-LLM", "kube_llm", "-lead", "a" * 64, "x/../y"])
def test_an_invalid_namespace_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(KubeconfigError, match="invalid namespace"):
        load_target(_simple(tmp_path), None, bad)


@pytest.mark.parametrize(
    ("context", "server", "expected"),
    [
        ("kube-llm-sandbox", "https://127.0.0.1:41234", True),
        ("kube-llm-sandbox-cockpit", "https://localhost:41234", True),
        ("kube-llm-sandbox", "https://[::1]:6443", True),
        # A real cluster's context with the sandbox's name is not the sandbox.
        ("kube-llm-sandbox", "https://10.0.0.1:6443", False),
        ("kube-llm-sandbox", "https://sandbox.example.com", False),
        ("minikube", "https://127.0.0.1:6443", False),
    ],
)
def test_the_sandbox_is_its_context_names_on_loopback(
    context: str, server: str, expected: bool
) -> None:
    assert is_sandbox(context, server) is expected


def test_a_loaded_target_knows_it_is_the_sandbox(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "config",
        _config(
            {"kube-llm-sandbox-cockpit": {"cluster": "c", "user": "u"}},
            current="kube-llm-sandbox-cockpit",
            clusters={"c": {"server": "https://127.0.0.1:40000", "insecure-skip-tls-verify": True}},
        ),
    )
    target: ClusterTarget = load_target(path, None, None)
    assert target.sandbox
    assert not load_target(_simple(tmp_path), None, None).sandbox
