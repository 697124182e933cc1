"""The backend image's build context (issue 15 item 4): `minikube image build -f
backend/Dockerfile .` sends only what the image needs.

Two readers decide what goes into the context. BuildKit (`docker build`) reads
backend/Dockerfile.dockerignore, skipping `#` comments. Minikube tars the folder itself before
any builder sees it, reading only the root `.dockerignore`, and splits it into lines with no
comment handling (third_party/go-dockerclient/tar.go, `parseDockerignore`, minikube v1.38.1): a
comment line there would be a pattern. So the root file holds the same patterns and nothing
else. Both tar the folder with moby/patternmatcher's rules, ported below.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.kustomize.manifests import ROOT

ROOT_IGNORE = ROOT / ".dockerignore"
BACKEND_IGNORE = ROOT / "backend" / "Dockerfile.dockerignore"
DOCKERFILE = ROOT / "backend" / "Dockerfile"
# What must never travel with a build, whether or not it exists on this machine.
NEVER_SENT = (
    ".venv/bin/python",
    ".bench-venv/aiperf/bin/aiperf",
    ".checkov-venv/bin/checkov",
    ".sandbox/state.json",
    ".git/HEAD",
    ".mypy_cache/3.11/cache.db",
    "backend/__pycache__/app.cpython-311.pyc",
    "backend/sub/__pycache__/x.cpython-311.pyc",
    "tests/backend/test_app.py",
    "tui/__pycache__/main.cpython-311.pyc",
    "tui/web/__pycache__/server.cpython-311.pyc",
    "sandbox/__init__.py",
    "bench/loadgen.py",
    "reports/run/report.md",
    "README.md",
    "model.gguf",
)


@dataclass(frozen=True)
class Pattern:
    """One .dockerignore line as moby/patternmatcher compiles it."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]


def compile_pattern(line: str) -> Pattern:
    """patternmatcher.New and Pattern.compile: `!` negates, `**` crosses folders, `*` and `?`
    stay within one path segment; the whole cleaned path must match."""
    exclusion = line.startswith("!")
    text = line[1:].strip() if exclusion else line
    text = os.path.normpath(text).lstrip("/")
    if "[" in text or "\\" in text:
        raise ValueError(f"character classes and escapes are not ported: {line!r}")
    regex = ""
    i = 0
    while i < len(text):
        if text.startswith("**", i):
            i += 2
            if text.startswith("/", i):
                i += 1
            regex += ".*" if i == len(text) else "(.*/)?"
        elif text[i] == "*":
            regex += "[^/]*"
            i += 1
        elif text[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(text[i])
            i += 1
    return Pattern(text, exclusion, re.compile(f"^{regex}$"))


def patterns_as_buildkit_reads(text: str) -> list[str]:
    """BuildKit's (and the docker CLI's) reading: trimmed lines, no blanks, no `#` comments."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def patterns_as_minikube_reads(text: str) -> list[str]:
    """Minikube's reading: every line is a pattern (patternmatcher drops only blank ones)."""
    return [line.strip() for line in text.split("\n") if line.strip()]


def excluded(path: str, patterns: list[Pattern]) -> bool:
    """patternmatcher's MatchesOrParentMatches: the last pattern matching the path or one of its
    parent folders decides."""
    parents = list(PurePosixPath(path).parents)[:-1]
    candidates = [path, *(str(parent) for parent in reversed(parents))]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        if any(pattern.regex.match(candidate) for candidate in candidates):
            matched = not pattern.exclusion
    return matched


def context_files(root: Path, patterns: list[Pattern]) -> list[str]:
    """The files the tar of the build context holds, walked as moby's archive walks: an
    excluded folder is skipped unless an exception pattern lies inside it."""
    files: list[str] = []
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        kept_dirs = []
        for name in dirs:
            path = (rel / name).as_posix()
            inside = any(p.exclusion and (p.text + "/").startswith(path + "/") for p in patterns)
            if not excluded(path, patterns) or inside:
                kept_dirs.append(name)
        dirs[:] = kept_dirs
        files += [
            (rel / n).as_posix() for n in names if not excluded((rel / n).as_posix(), patterns)
        ]
    return sorted(files)


def root_patterns() -> list[Pattern]:
    """The root .dockerignore as minikube applies it."""
    return [compile_pattern(line) for line in patterns_as_minikube_reads(ROOT_IGNORE.read_text())]


def test_root_dockerignore_matches_the_backend_one() -> None:
    """Minikube's reading of the root file gives exactly BuildKit's reading of the backend one:
    the same patterns in the same order, and no comment that minikube would take as a pattern."""
    assert patterns_as_minikube_reads(ROOT_IGNORE.read_text()) == patterns_as_buildkit_reads(
        BACKEND_IGNORE.read_text()
    )


@pytest.mark.parametrize("path", NEVER_SENT)
def test_build_context_leaves_out_everything_but_the_backend(path: str) -> None:
    """Virtual environments, the sandbox's state, .git, caches and the other packages stay home
    (tui/ is sent: the frontend pods run it from the same image)."""
    assert excluded(path, root_patterns())


def test_build_context_is_the_backend_package_and_what_the_dockerfile_copies() -> None:
    """Walking this checkout: only backend/ and tui/ files (the frontend pods' `python -m tui
    web`), no bytecode, and every COPY source is there."""
    files = context_files(ROOT, root_patterns())
    assert files, "the context is empty"
    assert all(f.startswith(("backend/", "tui/")) and "__pycache__" not in f for f in files), files
    copies = re.findall(r"^COPY\s+(?!--from)(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert copies, "no COPY in backend/Dockerfile"
    for source in copies:
        source = source.rstrip("/")
        assert any(f == source or f.startswith(source + "/") for f in files), source
    assert "backend/__main__.py" in files
    assert "tui/web/server.py" in files


@pytest.mark.parametrize(
    ("lines", "path", "is_excluded"),
    [
        (["*"], "a/b/c.txt", True),
        (["*", "!backend/"], "backend/app.py", False),
        (["*", "!backend/"], "backendx/app.py", True),
        (["backend/**/__pycache__"], "backend/__pycache__/a.pyc", True),
        (["backend/**/__pycache__"], "backend/x/y/__pycache__/a.pyc", True),
        (["backend/**/__pycache__"], "backend/pycache.py", False),
        (["*.md", "!README.md"], "README.md", False),
        (["!README.md", "*.md"], "README.md", True),
        (["docs/?.md"], "docs/a.md", True),
        (["docs/?.md"], "docs/ab.md", False),
        (["/tmp"], "tmp/x", True),
        (["# a comment"], "# a comment", True),
    ],
)
def test_pattern_rules_follow_patternmatcher(
    lines: list[str], path: str, is_excluded: bool
) -> None:
    """The port keeps moby's rules: parents count, the last match wins, `?` is one character, a
    leading `/` is dropped, and a `#` line (as minikube reads it) is an ordinary pattern."""
    assert excluded(path, [compile_pattern(line) for line in lines]) is is_excluded
