// A real Phoenix Channels client for tests/integration/relay_ws_test.cpp: the
// official `phoenix` package over `ws`, as a browser app would use it.
//
//   node phoenix_client.js <socket url> <topic> [token]
//
// Joins <topic>, pushes "shout" {"body": ...} once joined, and prints one
// line per event on stdout (the test waits on them):
//   joined <topic> | push ok <response> | push error <response>
//   msg <topic> <event> <payload>     (every non-reply message, any topic;
//                                      "<n bytes>" for a payload over 200)
// A "fence" message ends the run once two heartbeats were answered:
//   summary shouts=<n> other_topics=<n> heartbeats=<n>
// then it disconnects and exits 0.
"use strict";
const { Socket } = require("phoenix");
const WebSocket = require("ws");

const [url, topic, token] = process.argv.slice(2);
const out = (line) => process.stdout.write(line + "\n");

const socket = new Socket(url, {
  transport: WebSocket,
  params: token ? { token } : {},
  // The official client also gives up on the connection when a heartbeat
  // is not answered within this interval (its heartbeat timeout is the
  // interval), and this one reconnects only after a minute: the fence that
  // ends it would then pass while it is away. At 50 ms a loaded machine (two
  // cluster tests beside two CPU hogs) missed a heartbeat; two seconds is a
  // stall, not a delay. PHOENIX_HEARTBEAT_MS overrides it.
  heartbeatIntervalMs: Number(process.env.PHOENIX_HEARTBEAT_MS || 2000),
  reconnectAfterMs: () => 60000,
  rejoinAfterMs: () => 60000,
  // The client's own view of the connection (a heartbeat timeout, a close)
  // on stderr: the tests print it when they fail.
  logger: (kind, msg) => {
    if (kind === "transport") {
      const t = new Date().toISOString().slice(11, 23);
      process.stderr.write(`${t} phoenix ${kind}: ${msg}\n`);
    }
  },
});

let heartbeats = 0;
let shouts = 0;
let otherTopics = 0;
let fenced = false;

socket.onMessage((m) => {
  if (m.topic === "phoenix" && m.event === "phx_reply") {
    if (m.payload.status === "ok") heartbeats++;
    return;
  }
  if (m.event === "phx_reply") return;
  const payload = JSON.stringify(m.payload);
  out(`msg ${m.topic} ${m.event} ${payload.length > 200 ? `<${payload.length} bytes>` : payload}`);
  if (m.topic !== topic) otherTopics++;
  if (m.event === "shout") shouts++;
  if (m.event === "fence") fenced = true;
});
socket.onError(() => out("socket error"));
socket.connect();

const channel = socket.channel(topic, {});
channel
  .join()
  .receive("ok", () => {
    out(`joined ${topic}`);
    channel
      .push("shout", { body: `hi from ${topic}` })
      .receive("ok", (r) => out(`push ok ${JSON.stringify(r)}`))
      .receive("error", (r) => out(`push error ${JSON.stringify(r)}`));
  })
  .receive("error", (r) => out(`join error ${JSON.stringify(r)}`));

const poll = setInterval(() => {
  if (!fenced || heartbeats < 2) return;
  clearInterval(poll);
  out(`summary shouts=${shouts} other_topics=${otherTopics} heartbeats=${heartbeats >= 2 ? "2+" : heartbeats}`);
  socket.disconnect(() => process.exit(0));
}, 10);
