"""The Kubernetes version the sandbox reports (`/version`, the node's kubelet version).

kubectl warns on every call when the server is more than one minor version away from it, and
the sandbox speaks the same API subset whatever number it reports. So it reports the minor
version of the kubectl it runs with (the one in this Python environment, else the one on PATH),
and 1.31, the oldest version the project supports, when there is none.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from sandbox.store.store import JSON

FALLBACK_MINOR = 31


@dataclass(frozen=True)
class ServedVersion:
    """The version the sandbox reports."""

    minor: int

    @property
    def git_version(self) -> str:
        """`v1.<minor>.0-kube-llm-sandbox`: the build suffix says what answers."""
        return f"v1.{self.minor}.0-kube-llm-sandbox"

    def info(self) -> JSON:
        """The body of `GET /version`."""
        return {
            "major": "1",
            "minor": str(self.minor),
            "gitVersion": self.git_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }


def kubectl_minor(kubectl: str | None) -> int | None:
    """The minor version of a kubectl binary, None when it cannot tell."""
    if kubectl is None:
        return None
    try:
        result = subprocess.run(
            [kubectl, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        minor = json.loads(result.stdout)["clientVersion"]["minor"]
        return int(str(minor).rstrip("+"))
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None


def served_version(kubectl: str | None) -> ServedVersion:
    """The version to report next to this kubectl (never below the oldest supported one)."""
    minor = kubectl_minor(kubectl)
    return ServedVersion(max(FALLBACK_MINOR, minor) if minor is not None else FALLBACK_MINOR)
