#!/usr/bin/env python3
"""Holds N idle TCP connections open to HOST:PORT (a distribution port) for
`scripts/bench handshake`: each connection says nothing; when the listener
closes one (a deadline, a cap), it is opened again, so N stay open for as long
as this runs. Prints "holding N" once all are open, then a line every 5 s
with how many were reopened. Ends on SIGTERM or SIGINT.

usage: handshake_flood.py HOST PORT N [SOURCE_IP]
SOURCE_IP: bind the connections to this address (e.g. 127.0.0.2: an attacker
on another host than the legitimate peers); default: the kernel's choice.
"""
import errno
import resource
import selectors
import signal
import socket
import sys
import time


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    sel = selectors.DefaultSelector()
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if source:
            s.bind((source, 0))
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS, errno.EAGAIN):
                s.close()
                return False
        sel.register(s, selectors.EVENT_READ)
        return True

    opened = 0
    while opened < n and not stop:
        if open_one():
            opened += 1
    print(f"holding {opened}", flush=True)
    reopened = 0
    last = time.monotonic()
    while not stop:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # closed by the listener: open another
                sel.unregister(s)
                s.close()
                if open_one():
                    reopened += 1
        if time.monotonic() - last >= 5:
            print(f"reopened {reopened}", flush=True)
            last = time.monotonic()


if __name__ == "__main__":
    main()
