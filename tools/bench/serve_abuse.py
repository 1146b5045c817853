#!/usr/bin/python3
"""serve_abuse.py - an honest socketmap client's latency, and the server's memory, while others abuse it.

  serve_abuse.py --server inet:ADDR:PORT --pid PID [--pipeliners 1000] [--slow 1000] [--seconds 10]
                 [--pipeline-bytes 1048576] [--domains ee.dane.test,testing.sts.test] [--map tls]
                 [--nice N] [--rcvbuf 4096] [--warmup 2]

Starts two kinds of hostile clients against --server, each in a process of its own:
  - pipeliners: connections that send requests for --domains back to back and never read a reply, each
    up to --pipeline-bytes (a cap, so that a server without bounds does not take the machine's memory),
    with a receive buffer of --rcvbuf bytes (small: the replies stay with the server, not in the kernel);
  - slow clients: connections that send one byte of a request a second (reconnecting when closed).
--warmup seconds later (2; longer measures the state after the first flood), one honest client (as a Postfix smtp process: one persistent connection, one request
at a time) asks for --domains in turn for --seconds, every reply checked against the first answer to
the same domain. Meanwhile VmRSS of --pid (the server) is sampled every 0.2 s. --nice N runs the hostile
clients at that niceness: on a small machine they otherwise take the CPU the server would need, which
is then measured instead of the server (the hostile clients of a real attack run elsewhere).

Output (last line, JSON): honest {requests, errors, p50_ms, p99_ms, max_ms}, rss_kib {before, max, end},
pipelined_bytes (sent by all pipeliners), slow_closed (slow connections the server closed), refused
(connections closed by the server before any reply).

The domains must be answered from the server's memory for the latency to mean anything: the script
asks each once before the abuse starts.
"""
import argparse
import json
import multiprocessing
import os
import resource
import select
import socket
import time


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


def connect(args, rcvbuf=0):
    family, addr = parse_server(args.server)
    s = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)
    s.setblocking(False)
    return s


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pipeliners(args, t_end, out):
    raise_nofile()
    os.nice(args.nice)
    chunk = b"".join(netstring("%s %s" % (args.map, d)) for d in args.domains.split(",")) * 200
    ep = select.epoll()
    conns = {}
    refused = 0
    for _ in range(args.pipeliners):
        try:
            s = connect(args, args.rcvbuf)
        except OSError:
            refused += 1
            continue
        conns[s.fileno()] = [s, 0]
        ep.register(s.fileno(), select.EPOLLOUT)
    total = 0
    while time.time() < t_end and conns:
        for fd, ev in ep.poll(0.2):
            c = conns[fd]
            try:
                n = c[0].send(chunk[c[1] % len(chunk):][:args.pipeline_bytes - c[1]])
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:      # closed by the server
                ep.unregister(fd)
                c[0].close()
                del conns[fd]
                continue
            c[1] += n
            total += n
            if c[1] >= args.pipeline_bytes:
                ep.unregister(fd)   # keep the connection open, reading nothing
    while time.time() < t_end:
        time.sleep(0.2)
    for c in conns.values():
        c[0].close()
    out.put(("pipelined_bytes", total, refused))


def slow_clients(args, t_end, out):
    raise_nofile()
    os.nice(args.nice)
    req = netstring("%s %s" % (args.map, args.domains.split(",")[0]))
    conns = []
    closed = 0
    for _ in range(args.slow):
        try:
            conns.append([connect(args), 0])
        except OSError:
            closed += 1
    while time.time() < t_end:
        t = time.time()
        for c in conns:
            try:
                c[0].send(req[c[1] % len(req):c[1] % len(req) + 1])
                c[1] += 1
            except OSError:
                closed += 1
                c[0].close()
                try:
                    c[0], c[1] = connect(args), 0
                except OSError:
                    pass
        time.sleep(max(0.0, 1.0 - (time.time() - t)))
    for c in conns:
        c[0].close()
    out.put(("slow_closed", closed, 0))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def take_reply(sock, buf):
    while True:
        n, colon, rest = buf.partition(b":")
        if colon and n.isdigit() and len(rest) >= int(n) + 1:
            return rest[:int(n)].decode("utf-8", "replace"), rest[int(n) + 1:]
        r, _, _ = select.select([sock], [], [], 30)
        if not r:
            raise TimeoutError("no reply within 30 s")
        c = sock.recv(65536)
        if not c:
            raise ConnectionError("closed by the server")
        buf += c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--pipeliners", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pipeline-bytes", type=int, default=1 << 20)
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--domains", default="ee.dane.test,testing.sts.test")
    ap.add_argument("--map", default="tls")
    args = ap.parse_args()
    raise_nofile()
    domains = args.domains.split(",")
    expect = {}
    for d in domains:   # warm the server's memory
        s = connect(args)
        s.setblocking(True)
        s.sendall(netstring("%s %s" % (args.map, d)))
        expect[d], _ = take_reply(s, b"")
        s.close()
    rss_before = rss_kib(args.pid)
    t_end = time.time() + args.warmup + args.seconds
    out = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=pipeliners, args=(args, t_end, out)),
          multiprocessing.Process(target=slow_clients, args=(args, t_end, out))]
    for p in ps:
        p.start()
    rss_max = rss_before
    t_honest = time.time() + args.warmup
    while time.time() < t_honest:
        rss_max = max(rss_max, rss_kib(args.pid))
        time.sleep(0.2)
    lat, errors, first_error = [], 0, None
    sock, buf, k = None, b"", 0
    next_rss = 0.0
    while time.time() < t_end:
        if time.time() >= next_rss:
            rss_max = max(rss_max, rss_kib(args.pid))
            next_rss = time.time() + 0.2
        d = domains[k % len(domains)]
        k += 1
        try:
            if sock is None:
                sock, buf = connect(args), b""
            t = time.perf_counter_ns()
            sock.send(netstring("%s %s" % (args.map, d)))
            reply, buf = take_reply(sock, buf)
            lat.append(time.perf_counter_ns() - t)
            if reply != expect[d]:
                errors += 1
                first_error = first_error or "%s: %r" % (d, reply)
        except (OSError, TimeoutError, ConnectionError) as e:
            errors += 1
            first_error = first_error or "%s: %s" % (d, e)
            if sock:
                sock.close()
            sock = None
            time.sleep(0.01)
    rss_end = rss_kib(args.pid)
    res = {}
    for _ in ps:
        name, v, refused = out.get()
        res[name] = v
        res["refused"] = res.get("refused", 0) + refused
    for p in ps:
        p.join()
    s = sorted(lat)

    def pct(q):
        return round(s[min(len(s) - 1, int(q * len(s)))] / 1e6, 3) if s else None

    res.update({"honest": {"requests": len(s), "errors": errors, "first_error": first_error, "p50_ms": pct(0.5),
                           "p99_ms": pct(0.99), "max_ms": round(s[-1] / 1e6, 3) if s else None},
                "rss_kib": {"before": rss_before, "max": max(rss_max, rss_end), "end": rss_end},
                "pipeliners": args.pipeliners, "slow": args.slow, "seconds": args.seconds, "warmup": args.warmup, "nice": args.nice,
                "rcvbuf": args.rcvbuf})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
