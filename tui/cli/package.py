"""What kube-llm ships, from the command line: `kube-llm manifests`, `kube-llm scenario list`,
`kube-llm completion SHELL`, and `-o json|yaml` for them and the headless commands.

The files themselves are found by `kube_llm_data` (one resolver for a wheel and a checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from kube_llm_data import (
    RenderError,
    ResourceError,
    kustomize_dir,
    overlay_dir,
    overlay_names,
    render,
    scenario_file,
    scenario_names,
)
from tui.scenario.spec import ScenarioError, load_scenario

Subparsers = argparse._SubParsersAction  # the type argparse gives `add_subparsers()`
SANDBOX_AUTOSCALERS = ("cpu", "queue")
"""The sandbox's `--autoscaler` names (`kube-llm demo --autoscaler`, `scenario compare
--autoscalers`)."""
OUTPUTS = ("json", "yaml")
SHELLS = ("bash", "zsh", "fish")
EXECUTABLES = ("kube-llm", "kubectl-llm")


def _fail(message: str) -> int:
    print(f"kube-llm: {message}", file=sys.stderr)
    return 2


def add_output_flags(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """`-o json|yaml` as kubectl spells it; `--json` stays as the same as `-o json`."""
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default=None,
        help="print json or yaml on stdout instead of the table (no progress line)",
    )
    if json_flag:
        parser.add_argument(
            "--json", dest="output", action="store_const", const="json", help="same as -o json"
        )


def dump(data: Any, output: str) -> str:
    """`data` as `-o json` or `-o yaml` prints it."""
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=4096).rstrip("\n")
    return json.dumps(data, indent=1)


def add_manifests_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm manifests [OVERLAY] [--path] [-o json|yaml]`."""
    manifests = commands.add_parser(
        "manifests",
        help="print an overlay's rendered manifests (for `| kubectl apply -f -`), or where "
        "the Kustomize folders are (--path)",
        description="Render an overlay kube-llm ships with kustomize and print it, so "
        "`kube-llm manifests minikube | kubectl apply -f -` deploys it; --path prints the "
        "overlay's folder (without OVERLAY: the Kustomize folder) for `kubectl apply -k`.",
    )
    overlay = manifests.add_argument(
        "overlay", nargs="?", metavar="OVERLAY", help=f"the overlay to render{_known_overlays()}"
    )
    overlay.completer = _complete_overlay  # type: ignore[attr-defined]  # argcomplete reads it
    manifests.add_argument(
        "--path", action="store_true", help="print the folder instead of the rendered YAML"
    )
    manifests.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default="yaml",
        help="yaml as kustomize renders it (the default) or json (a v1 List, as kubectl "
        "prints one)",
    )


def _known_overlays() -> str:
    """`: minikube, ...` for the help, or nothing when the folders cannot be found (then
    running the command says why)."""
    try:
        return f": {', '.join(overlay_names())}"
    except (OSError, ResourceError):
        return ""


def _complete_overlay(prefix: str, **_: object) -> list[str]:
    """The overlays, for the shell's completion of OVERLAY."""
    return [name for name in overlay_names() if name.startswith(prefix)]


def complete_scenario(prefix: str, **_: object) -> list[str]:
    """The shipped scenarios' names, then the YAML files, for the completion of NAME|FILE."""
    from argcomplete.completers import FilesCompleter

    names = [name for name in scenario_names() if name.startswith(prefix)]
    return names + list(FilesCompleter(("yaml", "yml"))(prefix))


def run_manifests(parsed: argparse.Namespace) -> int:
    """`kube-llm manifests`."""
    try:
        if parsed.overlay is None:
            if parsed.path:
                print(kustomize_dir())
                return 0
            return _fail(
                f"manifests: name an overlay ({', '.join(overlay_names())}), or give --path"
            )
        folder = overlay_dir(parsed.overlay)
        if parsed.path:
            print(folder)
            return 0
        rendered = render(folder)
    except (ResourceError, RenderError) as error:
        return _fail(f"manifests: {error}")
    if parsed.output == "json":
        items = [doc for doc in yaml.safe_load_all(rendered) if isinstance(doc, dict)]
        print(dump({"apiVersion": "v1", "kind": "List", "items": items}, "json"))
    else:
        sys.stdout.write(rendered)
    return 0


def add_scenario_list_parser(actions: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm scenario list [-o json|yaml]`."""
    listing = actions.add_parser(
        "list",
        help="the scenarios kube-llm ships (run one by name)",
        description="The scenarios kube-llm ships: their names (for `kube-llm scenario run "
        "NAME`), what each does, and where its file is.",
    )
    add_output_flags(listing, json_flag=False)


def run_scenario_list(parsed: argparse.Namespace) -> int:
    """`kube-llm scenario list`."""
    rows = []
    for name in scenario_names():
        path = scenario_file(name)
        try:
            description = load_scenario(path).description
        except ScenarioError as error:  # a shipped file that does not parse: say so, go on
            description = f"(does not parse: {error})"
        rows.append({"name": name, "description": description, "file": str(path)})
    if parsed.output is not None:
        print(dump(rows, parsed.output))
        return 0
    width = max((len(row["name"]) for row in rows), default=4)
    print(f"{'NAME':<{width}}  DESCRIPTION")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['description']}")
    return 0


def resolve_scenario(parsed: argparse.Namespace) -> int | None:
    """`scenario run NAME|FILE...` and `scenario compare NAME|FILE`: the file each name or path
    stands for (in `parsed.files` or `parsed.file`), or the exit code of a clear error."""
    try:
        if getattr(parsed, "files", None) is not None:
            parsed.files = [scenario_file(item) for item in parsed.files]
        elif getattr(parsed, "file", None) is not None:
            parsed.file = scenario_file(parsed.file)
    except ResourceError as error:
        print(f"kube-llm: the scenario cannot run:\n{error}", file=sys.stderr)
        return 2
    return None


def add_completion_parser(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """`kube-llm completion SHELL`."""
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish",
        description="Print the completion script for SHELL (argcomplete). bash: "
        "`source <(kube-llm completion bash)` in ~/.bashrc; zsh: `source <(kube-llm "
        "completion zsh)` in ~/.zshrc; fish: `kube-llm completion fish > "
        "~/.config/fish/completions/kube-llm.fish`.",
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")


def run_completion(parsed: argparse.Namespace) -> int:
    """`kube-llm completion SHELL`: argcomplete's script for both command names."""
    import argcomplete  # only here and when completing: `kube-llm --help` stays quick

    sys.stdout.write(argcomplete.shellcode(list(EXECUTABLES), shell=parsed.shell))
    return 0


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request, if this run is one (argcomplete sets
    `_ARGCOMPLETE`); returns at once otherwise."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)


__all__ = [
    "SANDBOX_AUTOSCALERS",
    "Subparsers",
    "add_completion_parser",
    "add_manifests_parser",
    "add_output_flags",
    "add_scenario_list_parser",
    "complete",
    "complete_scenario",
    "dump",
    "resolve_scenario",
    "run_completion",
    "run_manifests",
    "run_scenario_list",
]
