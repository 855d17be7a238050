#!/usr/bin/env python3
"""smtpload.py -- small, bounded SMTP load clients for tests/bench (stdlib only).

smtp-source cannot send RDLV or DETA, so these measure what it cannot:

  smtpload.py send --port P --messages N --sessions S --size BYTES [--rdlv] [--reuse]
      N transactions over S parallel sessions (one thread each), one message
      per connection unless --reuse. With --rdlv every transaction sends
      `RDLV` after RCPT and waits for the held final reply (the route must be
      quick: a 120 here counts as an error). Session i uses the sender
      s<i>@example.com (RDLV is limited per sender in processing).
      Prints one JSON object: ok, failed, elapsed, errors (the first few).

  smtpload.py deta --port P --trials N --sessions S --size BYTES [--maxtimer 1]
      N transactions with `RDLV maxtimer=M` to a route that outlasts the
      interval; after the first 120 the client sends DETA and measures
      DETA -> 221 and DETA -> EOF (the server closed the socket).
      Prints one JSON object: ok, failed, to_221 and to_close (seconds, one per
      successful trial), errors.

  smtpload.py idle --port P --connections N --hold SECS
      Opens N connections, reads the greeting, EHLO, then holds them idle for
      SECS and quits (used by hand; the harness uses `open_idle`).

Everything is bounded: each socket operation by --io-timeout, the whole run
by --deadline seconds; sessions stop after N transactions in total.
Only 127.0.0.1 is ever contacted.
"""

import argparse
import json
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


class SmtpError(Exception):
    pass


class Conn:
    """One SMTP connection with a line reader (no pipelining)."""

    def __init__(self, port, timeout):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SmtpError("connection closed by the server")
            self.buf += chunk
            if len(self.buf) > 1 << 20:
                raise SmtpError("reply line too long")
        ln, _, self.buf = self.buf.partition(b"\n")
        return ln.rstrip(b"\r").decode("latin-1")

    def reply(self):
        """(code, [text lines]) of one (possibly multi-line) reply."""
        lines = []
        for _ in range(1000):
            ln = self.line()
            if len(ln) < 3 or not ln[:3].isdigit():
                raise SmtpError(f"bad reply line {ln!r}")
            lines.append(ln[4:])
            if len(ln) == 3 or ln[3] == " ":
                return int(ln[:3]), lines
        raise SmtpError("reply of more than 1000 lines")

    def cmd(self, text, want):
        self.sock.sendall(text.encode("latin-1") + b"\r\n")
        code, lines = self.reply()
        if code != want:
            raise SmtpError(f"{text.split()[0]} -> {code} {' '.join(lines)[:120]}")
        return lines

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def content(size, sender, seq):
    """A message of about `size` bytes of body, CRLF lines, no leading dots."""
    head = (
        f"From: <{sender}>\r\nTo: <rcpt@example.net>\r\nSubject: bench {seq}\r\n"
        f"Message-Id: <bench.{seq}.{time.time_ns()}@example.com>\r\n\r\n"
    )
    line = ("La la la " * 9)[:78] + "\r\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith("\r\n"):
        body += "\r\n"
    return (head + body).encode("ascii")


def greet(port, timeout):
    c = Conn(port, timeout)
    code, lines = c.reply()
    if code != 220:
        c.close()
        raise SmtpError(f"greeting {code} {' '.join(lines)[:120]}")
    ext = c.cmd("EHLO bench-client.localdomain", 250)
    return c, {x.split()[0].upper() for x in ext[1:] if x.strip()}


class Counter:
    def __init__(self, n):
        self.lock = threading.Lock()
        self.left = n
        self.ok = 0
        self.failed = 0
        self.errors = []
        self.samples = {"to_221": [], "to_close": []}

    def take(self):
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def done(self, ok, err=None):
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
                if err and len(self.errors) < 5:
                    self.errors.append(err)


def run_sessions(n_sessions, worker):
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def cmd_send(a):
    ctr = Counter(a.messages)
    deadline = time.monotonic() + a.deadline

    def session(i):
        sender = f"s{i}@example.com"
        conn = None
        seq = 0
        while time.monotonic() < deadline and ctr.take():
            seq += 1
            try:
                if conn is None:
                    conn, ext = greet(a.port, a.io_timeout)
                    if a.rdlv and "RDLV" not in ext:
                        raise SmtpError("RDLV not advertised")
                conn.cmd(f"MAIL FROM:<{sender}>", 250)
                conn.cmd("RCPT TO:<rcpt@example.net>", 250)
                if a.rdlv:
                    conn.cmd("RDLV", 200)
                conn.cmd("DATA", 354)
                conn.sock.sendall(content(a.size, sender, f"{i}.{seq}") + b".\r\n")
                code, lines = conn.reply()
                if code != 250:
                    raise SmtpError(f"end of data -> {code} {' '.join(lines)[:120]}")
                if not a.reuse:
                    conn.cmd("QUIT", 221)
                    conn.close()
                    conn = None
                ctr.done(True)
            except (OSError, SmtpError) as e:
                ctr.done(False, str(e))
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            try:
                conn.cmd("QUIT", 221)
            except (OSError, SmtpError):
                pass
            conn.close()

    t0 = time.monotonic()
    run_sessions(a.sessions, session)
    out = {"ok": ctr.ok, "failed": ctr.failed, "elapsed": time.monotonic() - t0, "errors": ctr.errors}
    if ctr.left > 0:
        out["errors"].append(f"deadline: {ctr.left} transactions not started")
    return out


def cmd_deta(a):
    ctr = Counter(a.trials)
    deadline = time.monotonic() + a.deadline
    wait_120 = a.maxtimer * 3 + 5

    def session(i):
        sender = f"d{i}@example.com"
        seq = 0
        while time.monotonic() < deadline and ctr.take():
            seq += 1
            conn = None
            try:
                conn, ext = greet(a.port, a.io_timeout)
                if "RDLV" not in ext or "DETA" not in ext:
                    raise SmtpError(f"RDLV/DETA not advertised: {sorted(ext)}")
                conn.cmd(f"MAIL FROM:<{sender}>", 250)
                conn.cmd("RCPT TO:<rcpt@example.net>", 250)
                conn.cmd(f"RDLV maxtimer={a.maxtimer}", 200)
                conn.cmd("DATA", 354)
                conn.sock.sendall(content(a.size, sender, f"{i}.{seq}") + b".\r\n")
                conn.sock.settimeout(wait_120)
                code, lines = conn.reply()
                if code != 120:
                    raise SmtpError(f"expected 120 after the data, got {code} {' '.join(lines)[:120]}")
                conn.sock.settimeout(a.io_timeout)
                t0 = time.monotonic()
                conn.sock.sendall(b"DETA\r\n")
                code, lines = conn.reply()
                t1 = time.monotonic()
                if code != 221:
                    raise SmtpError(f"DETA -> {code} {' '.join(lines)[:120]}")
                for _ in range(256):  # until the server closes (each recv bounded by io_timeout)
                    try:
                        chunk = conn.sock.recv(4096)
                    except ConnectionResetError:
                        chunk = b""  # a reset is a close too
                    if not chunk:
                        break
                else:
                    raise SmtpError("no close after 221 (1 MiB read)")
                t2 = time.monotonic()
                with ctr.lock:
                    ctr.samples["to_221"].append(t1 - t0)
                    ctr.samples["to_close"].append(t2 - t0)
                ctr.done(True)
            except (OSError, SmtpError) as e:
                ctr.done(False, str(e))
            finally:
                if conn is not None:
                    conn.close()

    t0 = time.monotonic()
    run_sessions(a.sessions, session)
    out = {"ok": ctr.ok, "failed": ctr.failed, "elapsed": time.monotonic() - t0, "errors": ctr.errors}
    out.update(ctr.samples)
    return out


def open_idle(port, n, timeout=10.0):
    """Open n connections, each greeted and after EHLO; returns (conns, errors)."""
    conns, errors = [], []
    for _ in range(n):
        try:
            c, _ext = greet(port, timeout)
            conns.append(c)
        except (OSError, SmtpError) as e:
            errors.append(str(e))
    return conns, errors


def close_idle(conns):
    for c in conns:
        try:
            c.sock.settimeout(2)
            c.cmd("QUIT", 221)
        except (OSError, SmtpError):
            pass
        c.close()


def cmd_idle(a):
    conns, errors = open_idle(a.port, a.connections, a.io_timeout)
    time.sleep(min(a.hold, a.deadline))
    close_idle(conns)
    return {"ok": len(conns), "failed": len(errors), "errors": errors[:5]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("send", "deta", "idle"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--io-timeout", type=float, default=60.0)
        s.add_argument("--deadline", type=float, default=600.0)
        if name == "send":
            s.add_argument("--messages", type=int, required=True)
            s.add_argument("--sessions", type=int, default=1)
            s.add_argument("--size", type=int, default=4096)
            s.add_argument("--rdlv", action="store_true")
            s.add_argument("--reuse", action="store_true")
        elif name == "deta":
            s.add_argument("--trials", type=int, required=True)
            s.add_argument("--sessions", type=int, default=1)
            s.add_argument("--size", type=int, default=4096)
            s.add_argument("--maxtimer", type=int, default=1)
        else:
            s.add_argument("--connections", type=int, required=True)
            s.add_argument("--hold", type=float, default=5.0)
    a = p.parse_args(argv)
    out = {"send": cmd_send, "deta": cmd_deta, "idle": cmd_idle}[a.mode](a)
    print(json.dumps(out))
    return 0 if out["failed"] == 0 and out["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
