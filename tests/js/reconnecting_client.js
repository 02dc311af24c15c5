// A Phoenix Channels client that stays: the official `phoenix` client
// reconnecting and rejoining 100 ms after its connection goes (a relay
// restarting behind a Service), as a browser app would. For
// tests/cluster/beamlinks_cluster_test.cpp.
//
//   node reconnecting_client.js <socket url> <topic> <token>
//
// Prints one line per event on stdout:
//   joined <topic>                      each (re)join
//   closed                              the connection went away
//   msg <topic> <event> <payload>       every broadcast
// A "fence" broadcast ends it: it disconnects and exits 0.
"use strict";
const { Socket } = require("phoenix");
const WebSocket = require("ws");

const [url, topic, token] = process.argv.slice(2);
const out = (line) => process.stdout.write(line + "\n");
// The connection's story with the time of day on stderr, which the test
// prints beside the relays' logs when it fails.
const stamp = () => new Date().toISOString().slice(11, 23);
const note = (line) => {
  out(line);
  process.stderr.write(`${stamp()} ${line}\n`);
};

const socket = new Socket(url, {
  transport: WebSocket,
  params: { token },
  // Its heartbeat timeout is this interval: a relay that goes away closes
  // the connection, so the heartbeat only has to notice a stall. A short
  // one drops the client on a loaded machine, and a fence that passes while
  // it reconnects never reaches it.
  heartbeatIntervalMs: 10000,
  reconnectAfterMs: () => 100,
  rejoinAfterMs: () => 100,
  logger: (kind, msg) => {
    if (kind === "transport") process.stderr.write(`${stamp()} phoenix ${kind}: ${msg}\n`);
  },
});
socket.onClose(() => note("closed"));
socket.onMessage((m) => {
  if (m.event === "phx_reply" || m.topic === "phoenix") return;
  if (m.event.startsWith("phx_")) return;
  out(`msg ${m.topic} ${m.event} ${JSON.stringify(m.payload)}`);
  if (m.event === "fence") {
    process.stderr.write(`${stamp()} fence\n`);
    socket.disconnect(() => process.exit(0));
  }
});
socket.connect();
const channel = socket.channel(topic, {});
channel.join().receive("ok", () => note(`joined ${topic}`));
channel.onError(() => note("channel error"));
