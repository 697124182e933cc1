"""Container logs as a node keeps them: timestamped lines, capped files, one folder per run.

- Each run of the sandbox writes into a folder of its own, `<state>/logs/run-<time>-<pid>/`
  (`<state>/logs/latest` points at it); only the newest few runs are kept.
- A container's output is read from a pipe and written in the CRI log format the kubelet
  reads (`<RFC 3339 time> stdout F <line>`), so `kubectl logs --timestamps` and `--since`
  work. A file that passes its cap is rotated to `<name>.log.1` (the kubelet's
  `containerLogMaxSize`), so no container can fill the disk.
- A restarted container's last log moves to `<name>.previous.log` for `kubectl logs -p`.
- Reading serves `tailLines` and `sinceSeconds` from the end of the file, without reading the
  rest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

KEEP_RUNS = 5
MAX_LOG_BYTES = 10 * 1024 * 1024
"""The kubelet's default containerLogMaxSize (10 MiB)."""
_CHUNK = 64 * 1024
_MAX_LINE = 16 * 1024
"""A longer line without a newline is written as partial lines (`P`), as CRI does."""


def prepare_run_folder(root: Path, keep: int = KEEP_RUNS) -> Path:
    """A new folder for this run's logs under `root`, with the oldest runs beyond `keep` gone."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    folder = root / f"run-{stamp}-{os.getpid()}"
    folder.mkdir()
    runs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("run-"))
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    # Loose files from before runs had folders.
    for stale in root.glob("*.log"):
        stale.unlink(missing_ok=True)
    latest = root / "latest"
    with contextlib.suppress(OSError):
        latest.unlink(missing_ok=True)
        latest.symlink_to(folder.name)
    return folder


def _now_text() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def cri_line(text: bytes, partial: bool = False) -> bytes:
    """One line in the CRI log format."""
    return b"%s stdout %s %s\n" % (_now_text().encode(), b"P" if partial else b"F", text)


def write_line(path: Path, text: str) -> None:
    """Append one full line (the sandbox's own words for a container without a process)."""
    with path.open("ab") as handle:
        handle.write(cri_line(text.encode()))


def retire(path: Path) -> None:
    """A container restarts: its log becomes the previous one (`kubectl logs -p`)."""
    with contextlib.suppress(FileNotFoundError):
        path.replace(previous_path(path))


def previous_path(path: Path) -> Path:
    """Where the previous instance of a container's log is kept."""
    return path.with_name(path.name.removesuffix(".log") + ".previous.log")


async def pump(reader: asyncio.StreamReader, path: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
    """Copy a container's output into its log as CRI lines until the pipe closes."""
    pending = b""
    handle = _open_append(path)
    written = handle.tell()
    try:
        while True:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                break
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            out = [cri_line(line) for line in lines]
            while len(pending) > _MAX_LINE:
                out.append(cri_line(pending[:_MAX_LINE], partial=True))
                pending = pending[_MAX_LINE:]
            batch: list[bytes] = []
            for line in out:
                if written + len(line) > max_bytes and written:
                    handle.write(b"".join(batch))
                    batch = []
                    handle = _rotate(handle, path)
                    written = 0
                batch.append(line)
                written += len(line)
            handle.write(b"".join(batch))
            handle.flush()
        if pending:
            handle.write(cri_line(pending))
    finally:
        handle.close()


def _open_append(path: Path) -> BinaryIO:
    return path.open("ab")


def _rotate(handle: BinaryIO, path: Path) -> BinaryIO:
    """Close a full log, keep it as `<name>.1` (replacing the last one), open a fresh one."""
    handle.close()
    path.replace(path.with_name(path.name + ".1"))
    return path.open("ab")


def _read_from(path: Path, offset: int) -> bytes | None:
    """The bytes after `offset`; None when the file is now shorter (replaced)."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size < offset:
            return None
        handle.seek(offset)
        return handle.read(size - offset)


# ---------------------------------------------------------------------------------------------
# Reading


def _parse(line: bytes) -> tuple[dt.datetime | None, bytes, bytes]:
    """A CRI line's time, its time text and its content (with the newline unless partial)."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 4:
        return None, b"", line
    stamp, _stream, tag, content = parts
    try:
        moment = dt.datetime.fromisoformat(stamp[:26].decode() + "+00:00")
    except ValueError:
        return None, b"", line
    return moment, stamp, content if tag == b"P" else content + b"\n"


def read_log(
    path: Path,
    *,
    tail: int | None = None,
    since: dt.datetime | None = None,
    timestamps: bool = False,
    limit_bytes: int | None = None,
) -> bytes:
    """A container's log as `kubectl logs` shows it, read from the end when it can be."""
    if tail == 0:
        return b""
    picked: list[tuple[bytes, bytes]] = []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        remainder = b""
        done = False
        while position > 0 and not done:
            step = min(_CHUNK, position)
            position -= step
            handle.seek(position)
            block = handle.read(step) + remainder
            lines = block.split(b"\n")
            remainder = lines.pop(0) if position > 0 else b""
            for line in reversed(lines):
                if not line:
                    continue
                moment, stamp, content = _parse(line)
                if since is not None and moment is not None and moment < since:
                    done = True  # lines are in time order: the rest are older
                    break
                picked.append((stamp, content))
                if tail is not None and len(picked) >= tail:
                    done = True
                    break
    picked.reverse()
    text = b"".join(stamp + b" " + content if timestamps else content for stamp, content in picked)
    return text[:limit_bytes] if limit_bytes is not None else text


async def follow(
    path: Path, offset: int, still_there: Callable[[], bool], timestamps: bool = False
) -> AsyncIterator[bytes]:
    """What the container writes after `offset`, until it is gone or its log is replaced."""
    pending = b""
    while True:
        await asyncio.sleep(0.5)
        try:
            fresh = _read_from(path, offset)
        except FileNotFoundError:
            return
        if fresh is None:
            return  # rotated or restarted: this instance's log ended
        if fresh:
            pending += fresh
            offset += len(fresh)
            lines = pending.split(b"\n")
            pending = lines.pop()
            out = []
            for line in lines:
                _, stamp, content = _parse(line)
                out.append(stamp + b" " + content if timestamps and stamp else content)
            if out:
                yield b"".join(out)
        if not still_there():
            return
