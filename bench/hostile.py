#!/usr/bin/env python3
"""The client side of `scripts/bench hostile`: clients that try to make a
beamlink relay hold memory, with beamlink's RSS sampled while they run and
after they leave. Prints one line per figure; exits 1 if the relay stops
answering /healthz.

usage: hostile.py RELAY_PORT BEAMLINK_PID NODE_PID SECONDS
"""
import http.client
import json
import os
import select
import signal
import socket
import sys
import threading
import time

port, bl_pid, node_pid, seconds = (int(a) for a in sys.argv[1:5])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Samples beamlink's RSS every 100 ms while it runs."""

    def __init__(self):
        self.peak = 0.0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(bl_pid))
            time.sleep(0.1)

    def done(self):
        self.stop.set()
        self.t.join()
        return self.peak


def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body.decode(errors="replace")


def settle(label):
    """RSS once given back (within 2 MiB of idle), or after 30 s."""
    start = time.time()
    while time.time() < start + 30 and rss_mib(bl_pid) > idle + 2:
        time.sleep(0.2)
    took = time.time() - start
    after = f"{took:.0f} s" if rss_mib(bl_pid) <= idle + 2 else "not back in 30 s"
    print(f"  {label:<44} {rss_mib(bl_pid):8.1f} MiB ({after})")


idle = rss_mib(bl_pid)
print(f"beamlink idle                                  {idle:8.1f} MiB")

# 1. A client that pipelines GET /metrics and never reads the answers.
s = Sampler()
sock = socket.create_connection(("127.0.0.1", port))
sock.setblocking(False)
batch = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200
sent, end, how = 0, time.time() + seconds, "ran its time"
while time.time() < end:
    _, w, _ = select.select([], [sock], [], 3)
    if not w:
        how = "blocked: the relay stopped reading it"
        break
    try:
        sent += sock.send(batch)
    except BlockingIOError:
        pass
    except OSError:
        how = "closed by the relay"
        break
status, _ = get("/healthz")
peak = s.done()
print("1. pipelining GET /metrics without reading the answers")
print(f"  client: {how}, {sent / 1e6:.1f} MB of requests sent; /healthz meanwhile: {status}")
print(f"  {'beamlink RSS peak':<44} {peak:8.1f} MiB")
sock.close()
settle("beamlink RSS after it left")
if status != 200:
    sys.exit(1)

# 2. The node stops reading; clients POST 100 KB broadcasts as fast as answered.
os.kill(node_pid, signal.SIGSTOP)
s = Sampler()
body = json.dumps({"topic": "t", "event": "e", "payload": {"pad": "x" * 100000}})
counts = {}
lock = threading.Lock()
end = time.time() + seconds


def poster():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < end:
        c.request("POST", "/v1/broadcast", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        with lock:
            counts[r.status] = counts.get(r.status, 0) + 1


threads = [threading.Thread(target=poster) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
peak = s.done()
print("2. the node stopped (SIGSTOP), 8 clients POSTing 100 KB broadcasts")
print(f"  answers: {dict(sorted(counts.items()))}")
print(f"  {'beamlink RSS peak':<44} {peak:8.1f} MiB")
os.kill(node_pid, signal.SIGCONT)
deadline = time.time() + 120
while time.time() < deadline:
    _, m = get("/metrics")
    depth = [l for l in m.splitlines() if l.startswith("beamlink_relay_queue_bytes{")]
    if depth and all(l.endswith(" 0") for l in depth):
        break
    time.sleep(0.2)
settle("beamlink RSS once the node read its queue")
