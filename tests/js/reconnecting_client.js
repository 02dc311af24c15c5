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

const socket = new Socket(url, {
  transport: WebSocket,
  params: { token },
  heartbeatIntervalMs: 1000,
  reconnectAfterMs: () => 100,
  rejoinAfterMs: () => 100,
});
socket.onClose(() => out("closed"));
socket.onMessage((m) => {
  if (m.event === "phx_reply" || m.topic === "phoenix") return;
  if (m.event.startsWith("phx_")) return;
  out(`msg ${m.topic} ${m.event} ${JSON.stringify(m.payload)}`);
  if (m.event === "fence") socket.disconnect(() => process.exit(0));
});
socket.connect();
const channel = socket.channel(topic, {});
channel.join().receive("ok", () => out(`joined ${topic}`));
channel.onError(() => out("channel error"));
