#!/usr/bin/python3
"""dns_strip_proxy.py - a DNS forwarder of the mxsec test bed that deletes every RRSIG.

It plays the attacker on the path who strips DNSSEC signatures: each UDP query
is forwarded unchanged to the upstream server, and the reply comes back with
all RRSIG records (type 46) removed from the answer, authority and additional
sections (names decompressed, counts fixed; everything else as it was). A
validator that knows the zone is signed must call such data bogus, never
insecure.

Usage: dns_strip_proxy.py --listen ADDR:PORT --upstream ADDR:PORT --pidfile FILE --log FILE [--foreground]
Exits 0 once it listens (it daemonises unless --foreground); SIGTERM stops it.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

RRSIG = 46
LOG = None


def log(fmt, *args):
    if LOG:
        LOG.write(time.strftime("%Y-%m-%d %H:%M:%S ") + (fmt % args) + "\n")
        LOG.flush()


def read_name(msg, off):
    """(wire name without compression, offset after the name in the message)."""
    labels, end, jumps = [], None, 0
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg) or jumps > 64:
                raise ValueError("bad compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            raise ValueError("bad label type")
        if n == 0:
            labels.append(b"\x00")
            return b"".join(labels), (end if end is not None else off + 1)
        labels.append(msg[off:off + 1 + n])
        off += 1 + n


# Record types whose RDATA holds names that may be compressed (RFC 3597 §4): rewritten uncompressed.
NAME_RDATA = {2: "n", 5: "n", 12: "n", 39: "n", 15: "2n", 6: "nn4444", 33: "222n"}


def read_rdata(msg, off, rtype, rdlen):
    spec = NAME_RDATA.get(rtype)
    if not spec:
        return msg[off:off + rdlen]
    out, p = b"", off
    for c in spec:
        if c == "n":
            name, p = read_name(msg, p)
            out += name
        else:
            size = int(c)
            out += msg[p:p + size]
            p += size
    return out + msg[p:off + rdlen]


def strip(msg):
    """The reply without RRSIG records."""
    hdr = msg[:12]
    qd, an, ns, ar = struct.unpack("!4H", msg[4:12])
    off, out_q = 12, b""
    for _ in range(qd):
        name, off = read_name(msg, off)
        out_q += name + msg[off:off + 4]
        off += 4
    sections = []
    for count in (an, ns, ar):
        kept = []
        for _ in range(count):
            name, off = read_name(msg, off)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            rdata = read_rdata(msg, off, rtype, rdlen)
            off += rdlen
            if rtype == RRSIG:
                continue
            kept.append(name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata)
        sections.append(kept)
    counts = struct.pack("!4H", qd, len(sections[0]), len(sections[1]), len(sections[2]))
    body = out_q + b"".join(b"".join(s) for s in sections)
    if len(hdr) + len(counts) - 4 + len(body) > 65535:
        raise ValueError("reply too large")
    return hdr[:4] + counts + body


def handle(sock, data, client, upstream):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
            up.settimeout(3)
            up.connect(upstream)
            up.send(data)
            reply = up.recv(65535)
        sock.sendto(strip(reply), client)
    except (OSError, ValueError, struct.error) as e:
        log("query from %s: %s", client, e)


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--foreground", action="store_true")
    args = ap.parse_args()
    listen, upstream = parse_addr(args.listen), parse_addr(args.upstream)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(listen)
    except OSError as e:
        print("dns_strip_proxy.py: cannot listen on %s: %s" % (args.listen, e), file=sys.stderr)
        sys.exit(1)
    LOG = open(args.log, "a")
    if not args.foreground:
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(LOG.fileno(), 2)
        os.close(devnull)
    with open(args.pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(args.pidfile + ".tmp", args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    log("listening on %s, upstream %s, stripping RRSIGs", args.listen, args.upstream)
    while True:
        data, client = sock.recvfrom(65535)
        threading.Thread(target=handle, args=(sock, data, client, upstream), daemon=True).start()


if __name__ == "__main__":
    main()
