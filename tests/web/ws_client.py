"""A browser stand-in as a process: opens the page's websocket, reads until killed.

    python -m tests.web.ws_client WS_URL

It prints `open` once connected, answers pings while it runs (aiohttp's
autoping), and is then SIGKILLed (a crashed browser: the kernel closes its socket) or
SIGSTOPped (a vanished one: the socket stays open and nothing answers).
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp


async def main(url: str) -> None:
    """Connect and read for ever."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        print("open", flush=True)
        async for _message in ws:
            pass
        print(f"closed {ws.close_code}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
