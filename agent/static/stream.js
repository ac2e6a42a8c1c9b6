// Server-Sent Events over fetch (so the bearer token travels in a header, not the URL),
// with automatic reconnection and backoff. onEvent(name, data, id); onState("up"|"down").
export function openStream(url, headers, onEvent, onState) {
  let stopped = false, ctrl = null, backoff = 1000, retry = 2000, now = false;
  async function run() {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const r = await fetch(url, { headers: { ...headers(), Accept: "text/event-stream" }, signal: ctrl.signal, cache: "no-store" });
        if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status}`), { status: r.status });
        onState("up");
        backoff = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replaceAll("\r\n", "\n");
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let ev = "message", data = [], id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const k = line.split(":", 1)[0], v = line.slice(k.length + 1).replace(/^ /, "");
              if (k === "event") ev = v; else if (k === "data") data.push(v); else if (k === "id") id = v;
              else if (k === "retry" && /^\d+$/.test(v)) retry = +v;
            }
            if (data.length) onEvent(ev, data.join("\n"), id);
          }
        }
        onState("down");
      } catch (e) {
        if (stopped) return;
        if (!now) onState("down", e);
      }
      if (now) { now = false; continue; } // restarted on purpose (new token): reconnect at once
      await new Promise((res) => setTimeout(res, Math.max(retry, backoff)));
      backoff = Math.min(backoff * 2, 10000);
    }
  }
  run();
  return { stop() { stopped = true; ctrl?.abort(); }, restart() { now = true; ctrl?.abort(); } };
}
