"""Issue 9, items 9 and 14: container logs with timestamps, read from the end, capped, per run."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from pathlib import Path

from sandbox.store import logs


def written(path: Path, lines: list[tuple[str, str]]) -> None:
    """A CRI log with the given (time, text) lines."""
    path.write_bytes(b"".join(f"{when} stdout F {text}\n".encode() for when, text in lines))


LINES = [
    ("2026-12-01T00:00:00.000000000Z", "first"),
    ("2026-12-01T00:00:10.500000000Z", "second"),
    ("2026-12-01T00:00:20.000000000Z", "third"),
]


def test_read_log_tail_since_timestamps_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    written(path, LINES)
    assert logs.read_log(path) == b"first\nsecond\nthird\n"
    assert logs.read_log(path, tail=0) == b""
    assert logs.read_log(path, tail=2) == b"second\nthird\n"
    since = dt.datetime(2026, 12, 1, 0, 0, 10, tzinfo=dt.UTC)
    assert logs.read_log(path, since=since) == b"second\nthird\n"
    stamped = logs.read_log(path, tail=1, timestamps=True)
    assert stamped == b"2026-12-01T00:00:20.000000000Z third\n"
    assert logs.read_log(path, limit_bytes=8) == b"first\nse"


def test_tail_reads_only_the_end_of_a_large_log(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    line = b"2026-12-01T00:00:00.000000000Z stdout F " + b"x" * 100 + b"\n"
    with path.open("wb") as handle:
        for _ in range(200_000):  # about 28 MB
            handle.write(line)
        handle.write(b"2026-12-01T00:00:01.000000000Z stdout F last\n")
    before = _bytes_read()
    assert logs.read_log(path, tail=2).endswith(b"last\n")
    read = _bytes_read() - before
    assert read < 1024 * 1024, f"read {read} bytes for two lines"


def _bytes_read() -> int:
    """Bytes this process has read (Linux: /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def test_pump_timestamps_lines_and_caps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.log"

    async def run() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys\nfor i in range(3000): print('line', i)\nsys.stdout.write('tail')",
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        await logs.pump(process.stdout, path, max_bytes=20_000)
        await process.wait()

    asyncio.run(run())
    rotated = path.with_name("c.log.1")
    assert rotated.exists()
    assert path.stat().st_size <= 20_000
    assert rotated.stat().st_size <= 20_000
    text = logs.read_log(path)
    assert text.endswith(b"line 2999\ntail\n")
    first = path.read_bytes().split(b"\n")[0]
    stamp = first.split(b" ")[0].decode()
    assert dt.datetime.fromisoformat(stamp[:26] + "+00:00").year >= 2026


def test_a_restart_keeps_the_previous_log(tmp_path: Path) -> None:
    path = tmp_path / "ns_pod_backend.log"
    written(path, LINES[:1])
    logs.retire(path)
    assert not path.exists()
    assert logs.read_log(logs.previous_path(path)) == b"first\n"


def test_each_run_gets_a_folder_and_only_the_last_few_stay(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    (root / "kube-llm_old_backend.log").write_text("from before runs had folders")
    for index in range(7):
        (root / f"run-20260101T00000{index}-1").mkdir()
    folder = logs.prepare_run_folder(root, keep=3)
    runs = sorted(p.name for p in root.iterdir() if p.name.startswith("run-"))
    assert len(runs) == 3
    assert folder.name in runs
    assert (root / "latest").resolve() == folder.resolve()
    assert not list(root.glob("*.log"))


def test_the_sandbox_log_escapes_control_characters() -> None:
    import logging

    from sandbox.__main__ import EscapingFormatter

    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise KeyError("\x1b]0;title\x07")
    except KeyError:
        import sys

        record = logging.LogRecord(
            "sandbox", logging.ERROR, __file__, 1, "pod %s", ("x\x1b[31m",), sys.exc_info()
        )
    text = formatter.format(record)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "x\\x1b[31m" in text
    assert "\n" in text  # the traceback keeps its lines
