// A client posting continuously through a Service address, as a real
// service would: one keep-alive connection, a new one when it breaks, and
// every refused or failed POST tried again after a short pause. For
// tests/cluster/beamlinks_cluster_test.cpp (a rolling restart of the relays).
//
//   node service_poster.js <base url> <token> <topic> <event>
//
// Posts {"topic","event","payload":{"n":N,"a":A}} one at a time, N counting
// messages and A the attempt at N (0, 1, ...), so that each attempt is told
// apart from the others by what the receivers get. Prints one line per
// attempt:
//   202 N A           accepted
//   fail N A <why>    503, another status, or a connection error
// On SIGTERM it ends after the POST in flight, prints "done <accepted>" and
// exits 0.
"use strict";
const http = require("http");

const [base, token, topic, event] = process.argv.slice(2);
const url = new URL("/v1/broadcast", base);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const out = (line) => process.stdout.write(line + "\n");

let stopping = false;
let accepted = 0;
process.on("SIGTERM", () => {
  stopping = true;
});

function post(n, a) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ topic, event, payload: { n, a } });
    const req = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          authorization: `Bearer ${token}`,
        },
        timeout: 30000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, text }));
        res.on("error", (e) => resolve({ error: e.message }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ error: e.code || e.message }));
    req.end(body);
  });
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  for (let n = 0; !stopping; n++) {
    for (let a = 0; !stopping; a++) {
      const r = await post(n, a);
      if (r.status === 202) {
        accepted++;
        out(`202 ${n} ${a}`);
        break;
      }
      out(`fail ${n} ${a} ${r.error || r.status + " " + r.text.replace(/\s+/g, " ")}`);
      await pause(50);
    }
    await pause(5);  // a steady stream, not a flood: the receivers keep every message
  }
  out(`done ${accepted}`);
  agent.destroy();
  process.exit(0);
})();
