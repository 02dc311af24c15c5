// A plain `ws` client for tests/integration/relay_ws_test.cpp: sends what the
// official client never would and reports how the server reacts.
//
//   node raw_ws_client.js <url> <mode> [size]
//
// Modes: open (connect, then close normally), idle (send nothing),
// invalid_utf8, oversize (a text message of <size> bytes), malformed
// (a message that is no Phoenix V2 array), binary, slow (join <size> then
// stop reading), pingflood (stop reading, send pings without end).
// Prints "status <code>" when the upgrade is refused, "open" once connected,
// and "close <code> <reason>" when the connection closes; exits 0.
"use strict";
const WebSocket = require("ws");

const [url, mode, size] = process.argv.slice(2);
const out = (line) => process.stdout.write(line + "\n");

const ws = new WebSocket(url, { perMessageDeflate: false });
ws.on("unexpected-response", (req, res) => {
  out(`status ${res.statusCode}`);
  process.exit(0);
});
ws.on("error", (e) => out(`error ${e.message}`));
ws.on("close", (code, reason) => {
  out(`close ${code} ${reason.toString()}`);
  process.exit(0);
});
ws.on("open", () => {
  out("open");
  switch (mode) {
    case "open":
      ws.close(1000, "bye");
      break;
    case "idle":
      break;
    case "invalid_utf8":
      ws.send(Buffer.from([0x5b, 0xc3, 0x28, 0x5d]), { binary: false });
      break;
    case "oversize":
      ws.send("x".repeat(Number(size)));
      break;
    case "malformed":
      ws.send('["1","1","room:a"]');
      break;
    case "binary":
      ws.send(Buffer.from([1, 2, 3]), { binary: true });
      break;
    case "pingflood": {
      // Stops reading and sends pings as fast as it can: the server's pongs
      // must count against its outbound bound, not pile up.
      ws.pause();
      out("flooding");
      const ping = Buffer.alloc(125, 1);
      const burst = () => {
        if (ws.readyState !== WebSocket.OPEN) return;
        for (let i = 0; i < 200; i++) ws.ping(ping);
        setImmediate(burst);
      };
      burst();
      ws._socket.on("close", () => {
        out("tcp closed");
        process.exit(0);
      });
      break;
    }
    case "slow":
      ws.send(JSON.stringify(["1", "1", size, "phx_join", {}]));
      ws.once("message", () => {
        out("joined");
        ws.pause();  // stop reading: the server's queue for us grows
        setInterval(() => {}, 1000);  // a paused socket alone does not keep node running
      });
      break;
  }
});
