"""Our load path against established tools on the same server, in one run each (issue 10).

Two halves, each alternating rounds between the two clients so a neighbour's CPU burst falls
on both alike, and each printing the machine's load average beside its table:

- `hey`: `hey` (Debian package) and the cockpit's gateway client on the backend's `/healthz`
  (fake engine) at a fixed concurrency. Targets: at least 80 % of hey's requests/s, p50 within
  10 %. See bench/loadgen_hey.py.
- `aiperf`: NVIDIA's aiperf and the cockpit's load engine on streamed chats straight to
  llama-cpp-python's server on the embedded model, same prompts, concurrency and max_tokens.
  Target: TTFT and end-to-end p50/p95/p99 within 10 % of aiperf's; client CPU per request
  beside each other. aiperf is installed into `.bench-venv/aiperf` on first use (about
  1.2 GB, 2 minutes). See bench/loadgen_aiperf.py.

    .venv/bin/python bench/loadgen.py                  # both halves (make bench-loadgen)
    .venv/bin/python bench/loadgen.py hey [--concurrency 10] [--requests 2000] [--rounds 3]
    .venv/bin/python bench/loadgen.py aiperf [--concurrency 4] [--requests 24] [--rounds 5]
                                             [--max-tokens 64] [--seed 10] [--threads 1] [--no-pin]
"""

from __future__ import annotations

import argparse
import sys

import loadgen_aiperf
import loadgen_hey


def main() -> None:
    """Run one half, or both with their defaults."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    halves = parser.add_subparsers(dest="half", metavar="{hey,aiperf}")
    loadgen_hey.add_arguments(halves.add_parser("hey", help="GET /healthz: hey against ours"))
    loadgen_aiperf.add_arguments(
        halves.add_parser("aiperf", help="streamed chats: aiperf against our load engine")
    )
    args = parser.parse_args()
    if args.half == "hey":
        loadgen_hey.run(args)
    elif args.half == "aiperf":
        loadgen_aiperf.run(args)
    else:
        for name, half in (("hey", loadgen_hey), ("aiperf", loadgen_aiperf)):
            print(f"==> {name}", file=sys.stderr, flush=True)
            half.run(parser.parse_args([name]))
            print()


if __name__ == "__main__":
    main()
