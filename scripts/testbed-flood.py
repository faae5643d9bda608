#!/usr/bin/env python3
"""The test bed's attacker (Docs/testbed.md): captures real datagrams and floods a node with them.

  testbed-flood.py capture --iface eth0 --port 7400 --type N [--src ADDR] --out FILE [--timeout S]
      Writes the UDP payload of the first datagram to PORT whose first byte is N (a session
      packet type, Docs/noise.md) seen on IFACE, as raw bytes. Run it in the receiver's namespace.
  testbed-flood.py send --target ADDR --port 7400 --kind KIND [--file FILE] --seconds S
      Sends as fast as one core allows for S seconds; prints {"kind", "sent", "seconds"} as JSON.
      KIND: garbage (random bytes, random length 1-1232, random first byte), oversized (random
      1,300-9,000-byte datagrams: past the 1,232-byte limit, fragmented on the wire), replay
      (FILE's bytes again and again).

Only the standard library: it runs wherever python3 does."""
import argparse, json, os, random, socket, struct, sys, time


def capture(a):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x86DD))
    s.bind((a.iface, 0))
    s.settimeout(0.5)
    deadline = time.time() + a.timeout
    src = socket.inet_pton(socket.AF_INET6, a.src) if a.src else None
    while time.time() < deadline:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        ip = frame[14:]
        if len(ip) < 48 or ip[6] != 17:  # IPv6, next header UDP (the bed adds no extension headers)
            continue
        if src and ip[8:24] != src:
            continue
        dport = struct.unpack("!H", ip[42:44])[0]
        payload = ip[48:]
        if dport == a.port and payload and payload[0] == a.type:
            with open(a.out, "wb") as f:
                f.write(payload)
            print(json.dumps({"captured": len(payload), "type": a.type}))
            return 0
    print(f"no datagram of type {a.type} to port {a.port} on {a.iface} within {a.timeout} s", file=sys.stderr)
    return 1


def send(a):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    if a.kind == "garbage":
        payloads = [os.urandom(rng.randint(1, 1232)) for _ in range(512)]
        # A quarter carry a valid type byte and zero padding, so framing checks past the type run too.
        for i in range(0, 512, 4):
            p = bytearray(payloads[i]); p[0] = rng.randint(1, 7); p[1:4] = b"\0\0\0"; payloads[i] = bytes(p)
    elif a.kind == "oversized":
        payloads = [os.urandom(rng.randint(1300, 9000)) for _ in range(64)]
    elif a.kind == "replay":
        payloads = [open(a.file, "rb").read()]
    else:
        print(f"unknown kind {a.kind}", file=sys.stderr)
        return 2
    dest = (a.target, a.port)
    sent, n = 0, len(payloads)
    end = time.time() + a.seconds
    while time.time() < end:
        for i in range(256):
            try:
                s.sendto(payloads[(sent + i) % n], dest)
            except (BlockingIOError, OSError):
                pass  # a full queue drops at the sender, as a saturated link would
        sent += 256
    print(json.dumps({"kind": a.kind, "sent": sent, "seconds": a.seconds}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--iface", required=True); c.add_argument("--port", type=int, default=7400)
    c.add_argument("--type", type=int, required=True); c.add_argument("--src")
    c.add_argument("--out", required=True); c.add_argument("--timeout", type=float, default=20)
    f = sub.add_parser("send")
    f.add_argument("--target", required=True); f.add_argument("--port", type=int, default=7400)
    f.add_argument("--kind", required=True); f.add_argument("--file"); f.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    return capture(a) if a.cmd == "capture" else send(a)


if __name__ == "__main__":
    sys.exit(main())
