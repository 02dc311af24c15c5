// Records what real WebSocket clients send to a running relay, for the seed
// corpus of fuzz/websocket_fuzz.cpp: every byte from the client to the relay
// (the HTTP Upgrade request, then the masked frames), one file per session.
//
//   scripts/setup                     # tests/js/node_modules: phoenix, ws
//   node fuzz/capture_websocket.js build-dev/app/beamlink fuzz/corpus/websocket
//
// It starts its own epmd and `beamlink run` (relay on a free port, no
// peers: pushes are answered "not connected", which is fine here), puts a
// recording TCP proxy in front of the relay, runs the sessions below one
// after the other through it, and ends epmd and beamlink by PID.
//
// A seed is one byte seeding the splitter (fuzz/splitter.hpp; 0 and 0x5a),
// then the recorded bytes.
//
// Sessions: the official phoenix client (join, push, heartbeats, leave,
// disconnect: a close frame); the phoenix client pushing an ArrayBuffer (a
// binary frame, answered 1003); the `ws` client sending a ping, a message
// in fragments, a V2 join and heartbeat, then the V1 object form (answered
// 1008); invalid UTF-8 in a text frame (1007); an empty text frame.
"use strict";
const path = require("path");
const fs = require("fs");
const net = require("net");
const { spawn } = require("child_process");
const js = path.join(__dirname, "..", "tests", "js", "node_modules");
const { Socket } = require(path.join(js, "phoenix"));
const WebSocket = require(path.join(js, "ws"));

const [beamlink, outDir] = process.argv.slice(2);
fs.mkdirSync(outDir, { recursive: true });

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(20);
  }
  throw new Error("timed out");
}

// The proxy: client → relay bytes of the current session go to `recorded`.
let recorded = [];
function startProxy(relayPort) {
  return new Promise((resolve) => {
    const server = net.createServer((c) => {
      const up = net.connect(relayPort, "127.0.0.1");
      c.on("data", (d) => {
        recorded.push(Buffer.from(d));
        up.write(d);
      });
      up.on("data", (d) => c.write(d));
      c.on("end", () => up.end());
      up.on("end", () => c.end());
      c.on("error", () => up.destroy());
      up.on("error", () => c.destroy());
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function save(name) {
  const bytes = Buffer.concat(recorded);
  recorded = [];
  for (const split of [0, 0x5a]) {
    const file = path.join(outDir, `${name}-${split.toString(16).padStart(2, "0")}`);
    fs.writeFileSync(file, Buffer.concat([Buffer.from([split]), bytes]));
  }
  process.stderr.write(`${name}: ${bytes.length} bytes\n`);
}

// The official client: join, push, two heartbeats, leave, disconnect.
async function phoenixSession(url, binary) {
  const socket = new Socket(url, {
    transport: WebSocket,
    params: { token: "t" },
    heartbeatIntervalMs: 30,
    reconnectAfterMs: () => 60000,
    rejoinAfterMs: () => 60000,
  });
  let heartbeats = 0,
    closed = false,
    pushed = false,
    joined = false;
  socket.onMessage((m) => {
    if (m.topic === "phoenix" && m.event === "phx_reply") heartbeats++;
  });
  socket.onClose(() => (closed = true));
  socket.connect();
  const ch = socket.channel("room:lobby", { user: "fuzz" });
  ch.join().receive("ok", () => (joined = true));
  await waitFor(() => joined, 5000);
  const other = socket.channel("room:other", {});
  other.join();
  const payload = binary ? new Uint8Array([1, 2, 3, 255]).buffer : { body: "hi from room:lobby", n: 1 };
  ch.push("shout", payload)
    .receive("ok", () => (pushed = true))
    .receive("error", () => (pushed = true));
  if (binary) {
    await waitFor(() => closed, 5000);
  } else {
    await waitFor(() => pushed && heartbeats >= 2, 5000);
    await new Promise((r) => other.leave().receive("ok", r).receive("timeout", r));
    await new Promise((r) => socket.disconnect(r, 1000, "bye"));
    await sleep(100);
  }
  socket.disconnect();
}

// The `ws` client: whatever `steps` send, then wait for the server's close.
function rawSession(url, steps) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const done = () => resolve();
    ws.on("close", done);
    ws.on("error", done);
    ws.on("open", async () => {
      await steps(ws);
      setTimeout(() => ws.terminate(), 1000);
    });
  });
}

async function main() {
  const epmdPort = await freePort();
  const relayPort = await freePort();
  const epmd = spawn("epmd", ["-port", String(epmdPort)], { stdio: "ignore" });
  const env = {
    ...process.env,
    ERL_EPMD_PORT: String(epmdPort),
    ERLANG_COOKIE: "capture",
    NODE_HOST: "127.0.0.1",
    DIST_PORT_MIN: String(await freePort()),
  };
  env.DIST_PORT_MAX = env.DIST_PORT_MIN;
  await sleep(300);
  const relay = spawn(
    beamlink,
    ["run", "--name", "capture@127.0.0.1", "--relay-listen", `127.0.0.1:${relayPort}`, "--relay-token", "t"],
    { env, stdio: ["ignore", "ignore", "inherit"] },
  );
  try {
    await waitFor(
      () =>
        new Promise((r) => {
          const s = net.connect(relayPort, "127.0.0.1", () => (s.destroy(), r(true)));
          s.on("error", () => r(false));
        }),
      20000,
    );
    const proxy = await startProxy(relayPort);
    const base = `ws://127.0.0.1:${proxy.address().port}/socket`;
    const raw = `${base}/websocket?token=t&vsn=2.0.0`;

    await phoenixSession(base, false);
    save("phoenix-session");
    await phoenixSession(base, true);
    save("phoenix-binary-push");

    await rawSession(raw, async (ws) => {
      ws.ping("are you there");
      ws.send('["1","1","room:', { fin: false });
      ws.send('frag","phx_join",{}]', { fin: true });
      await sleep(50);
      ws.send('[null,"2","phoenix","heartbeat",{}]');
      ws.send('["1","3","room:frag","shout",{"body":"ü ☃ 😀"}]');
      ws.send('["1","4","room:frag","phx_leave",{}]');
      await sleep(50);
      ws.send('{"topic":"room:v1","event":"phx_join","payload":{},"ref":"5"}');
    });
    save("ws-fragments-v1-object");
    await rawSession(raw, async (ws) => {
      ws.send('[null,"1","phoenix","heartbeat",{}]');
      ws.send(Buffer.from([0x5b, 0x22, 0xc3, 0x28, 0x22, 0x5d]), { binary: false });
    });
    save("ws-invalid-utf8");
    await rawSession(raw, async (ws) => {
      ws.send("");
    });
    save("ws-empty-text");
    await rawSession(raw, async (ws) => {
      ws.send('["1","1","room:a","phx_join",{}]');
      await sleep(50);
      ws.close(1000, "done");
    });
    save("ws-join-close");
    proxy.close();
  } finally {
    relay.kill("SIGTERM");
    epmd.kill("SIGTERM");
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`capture: ${e.stack}\n`);
    process.exit(1);
  },
);
