"""What the user asked for on the command line: the settings the session, the cockpit and the
headless commands share. Plain data, so `kube-llm --help` imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CockpitSettings:
    """What the user asked for on the command line."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    backend_url: str | None = None
    read_only: bool = False
    deployment: str = "llm-backend"
    service: str = "llm-backend"
    burst_users: int = 10
    chats_per_user: int = 3
    sustained_users: int = 4
    max_tokens: int = 64
    report_dir: Path = Path("reports")
    profile: str | None = None
    """The sandbox profile `kube-llm demo` runs (`demo`, `minikube`); None on a cluster."""
