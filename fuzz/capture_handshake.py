#!/usr/bin/env python3
"""Records what a real erl sends as the initiator of a distribution
handshake, for the seed corpus of fuzz/handshake_acceptor_fuzz.cpp.

    python3 fuzz/capture_handshake.py fuzz/corpus/handshake_acceptor

For each scenario it starts its own epmd (foreground, ended by PID),
registers the name `fake` there with ALIVE2_REQ (highest version 6 or 5),
listens on the port it registered, and runs
`erl -name x@127.0.0.1 -setcookie c -eval 'net_adm:ping(fake@127.0.0.1)'`.
It answers as an Erlang node would (status, a challenge with challenge
0x11223344, and the ack with the right digest), and writes every byte erl
sent before the ack: send_name, (recv_status), (the complement), the
challenge reply. The fuzz target's acceptor uses the same cookie "c", name
fake@127.0.0.1 and challenge, so a seed completes the handshake.

A seed is: one byte choosing the Node's answer for the name (0 ok, 1 alive,
2 not_allowed), one byte seeding the splitter (fuzz/splitter.hpp), then the
recorded bytes.

Scenarios: OTP 25 with epmd saying version 6 ('N' send_name); OTP 25 with
epmd saying version 5 ('n' send_name carrying DFLAG_HANDSHAKE_23, then the
'c' complement after our 'N' challenge); the same answered "alive" (erl
then says "true"); OTP 22 (../shared/otp22, 'n' version 5, 32-bit flags)
when it is there.
"""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

COOKIE = b"c"
OUR_CHALLENGE = 0x11223344
OUR_NAME = b"fake@127.0.0.1"
# A hidden node's flags that satisfy OTP 22 to 26 (no DFLAG_PUBLISHED, no
# atom cache, no DFLAG_NAME_ME); a version 5 challenge carries the low 32
# bits without the version 6 ones (dflag::v6_only).
OUR_FLAGS = 0x07DF_7FFC | (1 << 32) | (1 << 34) | (1 << 35)
OUR_FLAGS_V5 = 0x00DF_7FFC


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def recv_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += chunk
    return b


def recv_msg(c, log):
    head = recv_exact(c, 2)
    (n,) = struct.unpack(">H", head)
    body = recv_exact(c, n)
    log.append(head + body)
    return body


def send_msg(c, body):
    c.sendall(struct.pack(">H", len(body)) + body)


def digest(challenge):
    return hashlib.md5(COOKIE + str(challenge).encode()).digest()


def capture(erl, highest, status, challenge_form):
    """Returns the bytes erl sent, as a list of messages."""
    epmd_port = free_port()
    epmd = subprocess.Popen(["epmd", "-port", str(epmd_port)])
    erl_proc = None
    try:
        deadline = time.time() + 10
        while True:
            try:
                reg = socket.create_connection(("127.0.0.1", epmd_port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        name = b"fake"
        req = struct.pack(">BHBBHHH", 120, port, 77, 0, highest, 5, len(name)) + name + b"\0\0"
        reg.sendall(struct.pack(">H", len(req)) + req)
        resp = recv_exact(reg, 2)
        assert resp[0] in (118, 121) and resp[1] == 0, resp
        env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port))
        erl_proc = subprocess.Popen(
            [erl, "-noshell", "-name", "x@127.0.0.1", "-setcookie", "c", "-eval",
             "io:format(\"~p~n\", [net_adm:ping('fake@127.0.0.1')]), halt()."],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lst.settimeout(20)
        c, _ = lst.accept()
        c.settimeout(20)
        log = []
        name_msg = recv_msg(c, log)
        v5 = name_msg[:1] == b"n"
        send_msg(c, b"s" + status)
        if status == b"alive":
            recv_msg(c, log)  # "strue"
        if challenge_form == "N":
            send_msg(c, b"N" + struct.pack(">QII", OUR_FLAGS, OUR_CHALLENGE, 7) +
                     struct.pack(">H", len(OUR_NAME)) + OUR_NAME)
        else:
            send_msg(c, b"n" + struct.pack(">HII", 5, OUR_FLAGS_V5, OUR_CHALLENGE) +
                     OUR_NAME)
        try:
            msg = recv_msg(c, log)
            if msg[:1] == b"c":
                msg = recv_msg(c, log)
            if msg[:1] == b"r":
                (their,) = struct.unpack(">I", msg[1:5])
                send_msg(c, b"a" + digest(their))
        except (EOFError, socket.timeout) as e:
            print("  erl stopped: %s" % e, file=sys.stderr)
        c.close()
        out, _ = erl_proc.communicate(timeout=30)
        print("  erl printed: %s (send_name %r, v5=%s)" % (out.decode().strip(), name_msg[:1], v5),
              file=sys.stderr)
        reg.close()
        lst.close()
        return log
    finally:
        if erl_proc and erl_proc.poll() is None:
            erl_proc.kill()
            erl_proc.wait()
        epmd.kill()
        epmd.wait()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    otp22 = os.path.join(here, "..", "..", "shared", "otp22", "bin", "erl")
    scenarios = [
        ("otp25-v6", "erl", 6, b"ok", "N", 0),
        ("otp25-v6-alive", "erl", 6, b"alive", "N", 1),
    ]
    if os.path.exists(otp22):
        scenarios += [
            ("otp22-v5", otp22, 5, b"ok", "n", 0),
            ("otp22-v5-alive", otp22, 5, b"alive", "n", 1),
        ]
    for name, erl, highest, status, form, status_byte in scenarios:
        print(name, file=sys.stderr)
        log = capture(erl, highest, status, form)
        whole = b"".join(log)
        # Whole (splitter byte 0 → pieces chosen by the seed), and another split.
        for split in (0, 0x5A):
            with open(os.path.join(out, "%s-%02x" % (name, split)), "wb") as f:
                f.write(bytes([status_byte, split]) + whole)
    # OTP 23 and 24 open with an old 'n' send_name carrying
    # DFLAG_HANDSHAKE_23 when epmd says version 5, and send the complement
    # 'c' FlagsHigh:4 Creation:4 after a 'N' challenge. OTP 25 (here) always
    # sends 'N', so that form is rebuilt from OTP 25's own messages: its
    # flags, creation and name, and its challenge reply unchanged (the digest
    # is of our challenge, whatever the form).
    for alive in (False, True):
        src = "otp25-v6-alive-00" if alive else "otp25-v6-00"
        with open(os.path.join(out, src), "rb") as f:
            whole = f.read()[2:]
        (n,) = struct.unpack(">H", whole[:2])
        msg_n = whole[2:2 + n]
        rest = whole[2 + n:]
        flags, creation, nlen = struct.unpack(">QIH", msg_n[1:15])
        name = msg_n[15:15 + nlen]
        old = b"n" + struct.pack(">HI", 5, flags & 0xFFFFFFFF) + name
        comp = b"c" + struct.pack(">II", flags >> 32, creation)
        status = b""
        if alive:  # "strue" comes right after the name
            (sn,) = struct.unpack(">H", rest[:2])
            status, rest = rest[:2 + sn], rest[2 + sn:]
        seq = struct.pack(">H", len(old)) + old + status + struct.pack(">H", len(comp)) + comp + rest
        for split in (0, 0x5A):
            tag = "otp23-v5-handshake23%s-%02x" % ("-alive" if alive else "", split)
            with open(os.path.join(out, tag), "wb") as f:
                f.write(bytes([1 if alive else 0, split]) + seq)
    # The Node refusing the name: the same bytes, answered not_allowed.
    with open(os.path.join(out, "otp25-v6-00"), "rb") as f:
        whole = f.read()[2:]
    with open(os.path.join(out, "otp25-v6-not-allowed"), "wb") as f:
        f.write(bytes([2, 0]) + whole)


if __name__ == "__main__":
    main()
