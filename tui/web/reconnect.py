"""The page's reconnect: back to a live pod when the server serving a session goes away.

textual-serve's page (`textual.js`) adds `-closed` to the body when its websocket closes, which
shows "Session ended" and a Restart button that reloads the page; it never retries. Behind a
Service (the frontend pods, or the sandbox's stand-in for it) the next page load lands on a
live pod, so this script, added to the page's head before `textual.js` runs, watches how each
websocket closes. A close with code 1000 is the cockpit ending as asked (`q`, Ctrl+C): the page
stays ended, as upstream's does. Any other close (1001: the server is stopping, as a deleted
pod's does; 1006: the connection dropped, as a killed pod's does; 1013: every session taken)
says so in the closed dialog and, after a jittered back-off of 1, 2, 4, 8 and then 10 s, asks
the same URL for the page again; once one answers 200, the page reloads and starts a session
there. No part of textual-serve's code is copied: its `WebSocket` is subclassed in place.
"""

from __future__ import annotations

ENDED_BY_THE_APP = 1000
"""WebSocket close code (RFC 6455, 7.4.1) the server sends when the cockpit ended on its own."""
SERVER_GOING_AWAY = 1001
"""...and when the server stops (a pod deleted or rolled): the page reconnects."""

RECONNECT_SCRIPT = """<script>
(() => {
  const Native = window.WebSocket;
  let reconnecting = false;
  const say = (text) => {
    const message = document.querySelector(".closed-dialog .message");
    if (message) message.textContent = text;
  };
  async function reconnect(code) {
    if (reconnecting) return;
    reconnecting = true;
    let last = "";
    for (let attempt = 0; ; attempt++) {
      const seconds = Math.min(10, 2 ** attempt) * (0.75 + Math.random() / 2);
      say(`The cockpit's server went away (websocket code ${code}${last}). ` +
          `Reconnecting in ${Math.round(seconds)} s (attempt ${attempt + 1})...`);
      await new Promise((done) => setTimeout(done, seconds * 1000));
      try {
        const answer = await fetch(window.location.href, {cache: "no-store"});
        if (answer.ok) {
          say("Reconnecting...");
          window.location.reload();
          return;
        }
        last = `; the page answered ${answer.status}`;
      } catch (error) {
        last = "; no server answered";
      }
    }
  }
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("close", (event) => {
        window.__kubeLlmClose = event.code;
        if (event.code !== ENDED) reconnect(event.code);
      });
    }
  };
})();
</script>""".replace("ENDED", str(ENDED_BY_THE_APP))
