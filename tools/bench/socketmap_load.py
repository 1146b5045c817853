#!/usr/bin/python3
"""socketmap_load.py - load generator for Postfix socketmap servers (tools/bench/serve_bench.sh).

  socketmap_load.py --server inet:ADDR:PORT --domains FILE [--clients 100] [--seconds 10]
                    [--procs 2] [--map tls] [--expect PREFIX] [--warm]

Like Postfix's smtp processes, every client keeps ONE persistent connection and has one request
outstanding at a time: send "<map> <domain>" as a netstring, wait for the reply, send the next.
Clients take domains from FILE (one a line) in turn, each starting at a different offset. The clients
are spread over --procs processes (non-blocking sockets, epoll), so that the generator itself is less
of a bottleneck. Every reply is checked: it must be a well-formed netstring and, with --expect, start
with PREFIX (e.g. "OK secure"); anything else is counted as an error.

--warm: each domain is asked once (by --clients connections, concurrently) until every reply starts
with --expect, retrying TEMP answers for up to --seconds; prints how many were good.

Output (last line, JSON): {"requests", "errors", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms",
"max_ms", "clients", "first_error"}.
"""
import argparse
import json
import multiprocessing
import os
import resource
import select
import socket
import sys
import time
from array import array


def parse_server(spec):
    if spec.startswith("inet:"):
        host, _, port = spec[5:].rpartition(":")
        return socket.AF_INET, (host.strip("[]"), int(port))
    if spec.startswith("unix:"):
        return socket.AF_UNIX, spec[5:]
    raise SystemExit("--server: expected inet:ADDR:PORT or unix:PATH, got %r" % spec)


def netstring(s):
    b = s.encode()
    return b"%d:%s," % (len(b), b)


def take_reply(buf):
    """(reply or None, rest); raises ValueError on a malformed netstring."""
    colon = buf.find(b":")
    if colon < 0:
        if len(buf) > 10 or not buf.isdigit() and buf:
            raise ValueError("bad reply %r" % buf[:60])
        return None, buf
    n = buf[:colon]
    if not n.isdigit():
        raise ValueError("bad reply %r" % buf[:60])
    n = int(n)
    if len(buf) < colon + 1 + n + 1:
        return None, buf
    if buf[colon + 1 + n:colon + 2 + n] != b",":
        raise ValueError("reply not ended by a comma: %r" % buf[:60])
    return buf[colon + 1:colon + 1 + n].decode("utf-8", "replace"), buf[colon + 2 + n:]


def worker(args, domains, first_client, nclients, t_start, t_end, out):
    """Runs NCLIENTS persistent connections from T_START to T_END (time.time()); puts
    (latencies_ns bytes, requests, errors, first_error) on OUT."""
    family, addr = parse_server(args.server)
    ep = select.epoll()
    conns = {}
    for i in range(nclients):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect(addr)
        s.setblocking(False)
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        k = first_client + i
        conns[s.fileno()] = {"sock": s, "next": (k * 7919) % len(domains), "buf": b"", "sent": 0}
        ep.register(s.fileno(), select.EPOLLIN)
    lat = array("q")
    errors = 0
    first_error = None
    prefix = args.expect
    while time.time() < t_start:
        time.sleep(0.001)

    def send(c):
        d = domains[c["next"]]
        c["next"] = (c["next"] + 1) % len(domains)
        c["sent"] = time.perf_counter_ns()
        c["sock"].send(netstring("%s %s" % (args.map, d)))   # tiny: fits the socket buffer

    for c in conns.values():
        send(c)
    stop = False
    while conns:
        for fd, ev in ep.poll(0.5):
            c = conns[fd]
            try:
                data = c["sock"].recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data = b""
                first_error = first_error or "recv: %s" % e
            if not data:
                errors += 1
                first_error = first_error or "connection closed by the server"
                ep.unregister(fd)
                c["sock"].close()
                del conns[fd]
                continue
            c["buf"] += data
            try:
                reply, c["buf"] = take_reply(c["buf"])
            except ValueError as e:
                errors += 1
                first_error = first_error or str(e)
                ep.unregister(fd)
                c["sock"].close()
                del conns[fd]
                continue
            if reply is None:
                continue
            now = time.perf_counter_ns()
            lat.append(now - c["sent"])
            if prefix and not reply.startswith(prefix):
                errors += 1
                first_error = first_error or "unexpected reply %r" % reply[:120]
            if stop or time.time() >= t_end:
                stop = True
                ep.unregister(fd)
                c["sock"].close()
                del conns[fd]
                continue
            send(c)
        if time.time() >= t_end + 30:   # a server that stopped answering
            errors += len(conns)
            first_error = first_error or "%d requests unanswered 30 s after the end" % len(conns)
            break
    out.put((lat.tobytes(), len(lat), errors, first_error))


def warm(args, domains):
    """Asks every domain once, concurrently, until all replies start with --expect (TEMP retried)."""
    family, addr = parse_server(args.server)
    todo = list(domains)
    good = 0
    deadline = time.time() + args.seconds
    last = {}
    while todo and time.time() < deadline:
        retry = []
        pending = {}
        ep = select.epoll()
        for d in todo[:args.clients]:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.connect(addr)
            s.sendall(netstring("%s %s" % (args.map, d)))
            s.setblocking(False)
            pending[s.fileno()] = (s, d, [b""])
            ep.register(s.fileno(), select.EPOLLIN)
        todo = todo[args.clients:]
        while pending:
            events = ep.poll(60)
            if not events:
                break
            for fd, _ in events:
                s, d, buf = pending[fd]
                data = s.recv(65536)
                buf[0] += data
                reply, _ = take_reply(buf[0]) if data else ("<closed>", b"")
                if reply is None:
                    continue
                ep.unregister(fd)
                s.close()
                del pending[fd]
                last[d] = reply
                if not args.expect or reply.startswith(args.expect):
                    good += 1
                else:
                    retry.append(d)
        for fd, (s, d, _) in pending.items():
            s.close()
            retry.append(d)
        todo += retry
        if retry and not todo[len(retry):]:
            time.sleep(0.2)
    example = last.get(domains[0], "")
    print(json.dumps({"warmed": good, "domains": len(domains), "not_ready": len(todo),
                      "example": "%s -> %s" % (domains[0], example),
                      "first_bad": ("%s -> %s" % (todo[0], last.get(todo[0]))) if todo else None}))
    return 0 if not todo else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--domains", required=True)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--map", default="tls")
    ap.add_argument("--expect", default="")
    ap.add_argument("--warm", action="store_true")
    args = ap.parse_args()
    with open(args.domains) as f:
        domains = [ln.strip() for ln in f if ln.strip()]
    if not domains:
        raise SystemExit("no domains in %s" % args.domains)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.warm:
        sys.exit(warm(args, domains))

    procs = max(1, min(args.procs, args.clients))
    out = multiprocessing.Queue()
    t_start = time.time() + 1.0     # every process connected before the clock starts
    t_end = t_start + args.seconds
    ps = []
    per = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
    first = 0
    for i in range(procs):
        p = multiprocessing.Process(target=worker, args=(args, domains, first, per[i], t_start, t_end, out))
        p.start()
        ps.append(p)
        first += per[i]
    lat = array("q")
    errors = 0
    first_error = None
    for _ in ps:
        raw, n, e, fe = out.get()
        a = array("q")
        a.frombytes(raw)
        lat.extend(a)
        errors += e
        first_error = first_error or fe
    for p in ps:
        p.join()
    s = sorted(lat)

    def pct(q):
        return round(s[min(len(s) - 1, int(q * len(s)))] / 1e6, 3) if s else None

    res = {"requests": len(s), "errors": errors, "seconds": args.seconds,
           "rps": round(len(s) / args.seconds), "p50_ms": pct(0.50), "p90_ms": pct(0.90),
           "p99_ms": pct(0.99), "max_ms": round(s[-1] / 1e6, 3) if s else None,
           "clients": args.clients, "procs": procs, "first_error": first_error}
    print(json.dumps(res))
    sys.exit(1 if errors or not s else 0)


if __name__ == "__main__":
    main()
