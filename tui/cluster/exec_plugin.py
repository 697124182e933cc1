"""A kubeconfig user's exec credential plugin (`client.authentication.k8s.io/v1` and `v1beta1`),
run as client-go's exec authenticator runs it for kubectl.

Why kube-llm runs it instead of the `kubernetes` package (37.0.3, read 2026-12-07):

- its synchronous loader renews a token whenever it is within five minutes of its
  `expirationTimestamp` (`EXPIRY_SKEW_PREVENTION_DELAY`), by running the plugin again before
  *each* request in those five minutes, and for a token that lives less than that (the
  sandbox's, or any short one) before every request;
- its asyncio loader (`kubernetes.aio.config`) renews nothing by itself: a caller must run its
  `refresh_token` loop, which polls every minute with the same five-minute skew;
- neither does anything on a 401, so a revoked token fails every request until it expires;
- neither reads `interactiveMode` (both decide from whether stdout is a terminal), the asyncio one
  ignores `provideClusterInfo` and runs a relative `command` from the current folder, and both
  log a failing plugin instead of raising (the client then goes on without credentials).

client-go (`plugin/pkg/client/auth/exec/exec.go`, `tools/clientcmd/loader.go` and
`validation.go`) keeps the credential until its `expirationTimestamp` (none: for ever), runs the
plugin again when a request with the cached credential gets a 401 (once, however many requests
saw that 401), passes `KUBERNETES_EXEC_INFO` with `interactive` from `interactiveMode` and, with
`provideClusterInfo`, the cluster; resolves a `command` that holds a path separator against the
folder of the kubeconfig file that defined the user; and fails with the plugin's error. This
module does the same; `tui.cluster.credentials` keeps the credential and reacts to the 401.

One difference, on purpose: client-go lets the plugin write to the terminal's stderr. The
cockpit owns the terminal once it runs, so only the first run (`load_target`, before any screen
is drawn) may be interactive; later ones are run as client-go runs them when kubectl's stdin is
taken (`StdinUnavailable`): `IfAvailable` is not interactive, `Always` is an error that says so.
Their stderr is kept for the error message.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.cluster.errors import KubeconfigError

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
"""The ExecCredential versions client-go accepts (v1alpha1 is gone since 1.24)."""
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
CLUSTER_EXTENSION = "client.authentication.k8s.io/exec"
"""The cluster extension whose value reaches the plugin as `spec.cluster.config`."""
RUN_SECONDS = 60
"""How long a non-interactive run may take (client-go waits for ever; a hung plugin would
freeze every request here)."""
_STDERR_SHOWN = 300


@dataclass(frozen=True)
class ExecCredential:
    """What one run of the plugin gave: the token and when it expires (epoch seconds)."""

    token: str
    expires: float | None

    def __repr__(self) -> str:
        return f"ExecCredential(<hidden>, expires={self.expires})"


class ExecPlugin:
    """A kubeconfig user's `exec` section, checked when loaded and run when a token is due."""

    __slots__ = ("_args", "_cluster", "_command", "_env", "_mode", "_spec", "_where")

    def __init__(
        self,
        spec: Mapping[str, Any],
        base: Path,
        where: str,
        cluster: Mapping[str, Any] | None = None,
        cluster_base: Path | None = None,
    ) -> None:
        """`spec`: the user's `exec`; `base`: the folder of the file that defined the user;
        `where`: which user in which file, for errors; `cluster`: the context's cluster entry
        (sent to the plugin only with `provideClusterInfo`), from a file in `cluster_base`."""
        self._spec = spec
        self._where = where
        version = spec.get("apiVersion")
        if version not in API_VERSIONS:
            raise KubeconfigError(
                f"{where}: exec plugin apiVersion {version!r} is not one kube-llm (and kubectl) "
                f"accepts: {', '.join(API_VERSIONS)}"
            )
        command = spec.get("command")
        if not isinstance(command, str) or not command:
            raise KubeconfigError(f"{where}: the exec plugin has no command")
        # As clientcmd's loader: a command with a path separator is relative to the kubeconfig
        # file's folder; a bare name is looked up on PATH.
        if os.sep in command and not os.path.isabs(command):
            command = str(base.absolute() / command)
        self._command = command
        self._args = [str(arg) for arg in spec.get("args") or []]
        self._env: dict[str, str] = {}
        for entry in spec.get("env") or []:
            if not isinstance(entry, Mapping) or not entry.get("name"):
                raise KubeconfigError(f"{where}: an exec plugin env entry has no name")
            self._env[str(entry["name"])] = str(entry.get("value", ""))
        mode = spec.get("interactiveMode")
        if not mode and version != API_VERSIONS[0]:
            mode = "IfAvailable"  # the v1beta1 default; v1 requires it (clientcmd's validation)
        if mode not in INTERACTIVE_MODES:
            raise KubeconfigError(
                f"{where}: the exec plugin's interactiveMode must be one of "
                f"{', '.join(INTERACTIVE_MODES)} (it is required for {API_VERSIONS[0]}), "
                f"not {mode!r}"
            )
        self._mode = str(mode)
        self._cluster = (
            _cluster_info(cluster or {}, cluster_base or base)
            if spec.get("provideClusterInfo")
            else None
        )

    def __repr__(self) -> str:
        return f"ExecPlugin({self._command!r})"

    def run(self, stdin_available: bool = False) -> ExecCredential:
        """Run the plugin once. `stdin_available`: the terminal is free for it (the first run,
        before the cockpit draws); a KubeconfigError naming the kubeconfig when it fails."""
        interactive = self._interactive(stdin_available)
        spec: dict[str, Any] = {"interactive": interactive}
        if self._cluster is not None:
            spec["cluster"] = self._cluster
        info = {"apiVersion": self._spec["apiVersion"], "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self._env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = subprocess.run(
                [self._command, *self._args],
                env=env,
                stdin=None if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if interactive else subprocess.PIPE,
                text=True,
                timeout=None if interactive else RUN_SECONDS,
                check=False,
            )
        except FileNotFoundError:
            raise self._failed("was not found (is it installed and on PATH?)") from None
        except subprocess.TimeoutExpired:
            raise self._failed(f"did not finish within {RUN_SECONDS} s") from None
        except OSError as error:
            raise self._failed(f"could not start: {error.strerror or error}") from None
        if done.returncode != 0:
            said = (done.stderr or "").strip()[-_STDERR_SHOWN:]
            raise self._failed(f"exited {done.returncode}" + (f": {said}" if said else ""))
        return self._credential(done.stdout)

    def _interactive(self, stdin_available: bool) -> bool:
        terminal = stdin_available and sys.stdin is not None and sys.stdin.isatty()
        if self._mode == "Never":
            return False
        if self._mode == "IfAvailable":
            return terminal
        if not terminal:
            raise self._failed(
                "needs a terminal (interactiveMode: Always), and kube-llm has none to give it "
                "now: log in with kubectl on this context first, or set interactiveMode to "
                "IfAvailable if the plugin can renew without asking"
            )
        return True

    def _credential(self, stdout: str) -> ExecCredential:
        try:
            printed = json.loads(stdout)
        except ValueError:
            raise self._failed("printed something other than JSON on stdout") from None
        version = self._spec["apiVersion"]
        if not isinstance(printed, dict) or printed.get("kind") != "ExecCredential":
            raise self._failed("printed JSON that is not an ExecCredential")
        if printed.get("apiVersion") != version:
            raise self._failed(
                f"printed an ExecCredential of {printed.get('apiVersion')!r}; the kubeconfig "
                f"asks for {version}"
            )
        status = printed.get("status")
        if not isinstance(status, dict):
            raise self._failed("printed an ExecCredential without a status")
        token = status.get("token")
        if not token and status.get("clientCertificateData"):
            raise self._failed(
                "gave a client certificate; kube-llm takes only tokens from exec plugins"
            )
        if not isinstance(token, str) or not token:
            raise self._failed("printed an ExecCredential without a token")
        stamp = status.get("expirationTimestamp")
        try:
            expires = (
                dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
                if stamp
                else None
            )
        except ValueError:
            raise self._failed(
                f"printed an expirationTimestamp that is no time: {stamp!r}"
            ) from None
        return ExecCredential(token, expires)

    def _failed(self, what: str) -> KubeconfigError:
        return KubeconfigError(f"{self._where}: the exec credential plugin {self._command} {what}")


def _cluster_info(cluster: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """The context's cluster as `ExecCredential.spec.cluster` carries it: its fields under
    their kubeconfig names, the CA as data (read from its file if need be), and the
    `client.authentication.k8s.io/exec` extension as `config`."""
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for name in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(name) not in (None, ""):
            info[name] = cluster[name]
    if cluster.get("certificate-authority-data"):
        info["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif cluster.get("certificate-authority"):
        path = base / str(cluster["certificate-authority"])
        try:
            info["certificate-authority-data"] = base64.b64encode(path.read_bytes()).decode()
        except OSError as error:
            raise KubeconfigError(
                f"cannot read the cluster's certificate-authority {path}: {error.strerror}"
            ) from None
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, Mapping) and extension.get("name") == CLUSTER_EXTENSION:
            info["config"] = extension.get("extension")
    return info
