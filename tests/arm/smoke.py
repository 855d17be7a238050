#!/usr/bin/env python3
"""Smoke test of a detad binary: native, or a cross-built one under qemu-user.

    tests/arm/smoke.py BINARY [--qemu "qemu-aarch64"] [--scale N] [--keep]

Starts BINARY with a temporary config and spool, listening on 127.0.0.1 on a
free port, and checks over a raw socket:

  1. -V and -t work;
  2. a plain SMTP transaction (with dot-stuffing) is delivered into a Maildir;
  3. RDLV + DATA to a slow pipe route gets 120 keep-alives, CONT waits one more
     interval, DETA gets 221 and a close, and the message is delivered after;
  4. `detad flush` reaches the running daemon;
  5. restart recovery: kill -9 (daemon and its children, like a power cut)
     while a detached job is in its pipe, restart, and the message is delivered;
  6. SIGTERM stops the daemon with exit 0 and leaves the spool empty
     (nothing in queue/, tmp/ or corrupt/).

Every wait is bounded; --scale multiplies the bounds (default 1 native, 4
under --qemu). Exits 0 on success, 1 with a message (and the tail of detad's
log) on failure, 2 on bad usage. Python 3 standard library only.
"""

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

SCALE = 1.0
VERBOSE = False


class SmokeFailure(Exception):
    pass


def log(msg):
    print(f"[smoke] {msg}", flush=True)


def fail(msg):
    raise SmokeFailure(msg)


def bound(seconds):
    return seconds * SCALE


def wait_for(what, pred, seconds, interval=0.1):
    """Poll pred() until it returns a true value or the (scaled) bound passes."""
    deadline = time.monotonic() + bound(seconds)
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            fail(f"timed out after {bound(seconds):.0f}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# The daemon


class Daemon:
    def __init__(self, argv_prefix, binary, conf, logpath):
        self.argv = argv_prefix + [binary, "-c", conf]
        self.logpath = logpath
        self.proc = None

    def start(self, port):
        with open(self.logpath, "ab") as f:
            f.write(f"===== start {' '.join(self.argv)}\n".encode())
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "debug" if VERBOSE else "info")
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                fail(f"detad exited with status {self.proc.returncode} during startup")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.settimeout(bound(5))
                    banner = s.recv(512)
                    if not banner.startswith(b"220"):
                        fail(f"unexpected greeting {banner!r}")
                    s.sendall(b"QUIT\r\n")
                    return True
            except (ConnectionRefusedError, socket.timeout, OSError):
                return False
        wait_for(f"detad to accept connections on 127.0.0.1:{port}", ready, 20, 0.2)
        log(f"detad running (pid {self.proc.pid}) on 127.0.0.1:{port}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, seconds=20):
        """SIGTERM, wait; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=bound(seconds))
        except subprocess.TimeoutExpired:
            self.kill_tree()
            fail(f"detad did not exit within {bound(seconds):.0f}s of SIGTERM")

    def kill_tree(self):
        """SIGKILL the daemon and all its descendants at once, like a power cut."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        root = self.proc.pid
        os.kill(root, signal.SIGSTOP)      # no new children while we look
        pids = [root]
        i = 0
        while i < len(pids):
            for child in children_of(pids[i]):
                if child not in pids:
                    try:
                        os.kill(child, signal.SIGSTOP)
                    except ProcessLookupError:
                        continue
                    pids.append(child)
            i += 1
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        return pids

    def tail(self, n=60):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


# --------------------------------------------------------------------------
# A minimal SMTP client on a raw socket (smtplib cannot do 120/CONT/DETA).


class Smtp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=bound(10))
        self.buf = b""
        self.transcript = []

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, line):
        self.transcript.append(f"C: {line}")
        if VERBOSE:
            log(f"C: {line}")
        self.sock.settimeout(bound(10))
        self.sock.sendall(line.encode() + b"\r\n")

    def send_raw(self, data):
        self.sock.settimeout(bound(10))
        self.sock.sendall(data)

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout()
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        text = line.decode("utf-8", "replace")
        self.transcript.append(f"S: {text}")
        if VERBOSE:
            log(f"S: {text}")
        return text

    def reply(self, seconds, what):
        """Read one (possibly multi-line) reply: (code, [texts])."""
        deadline = time.monotonic() + bound(seconds)
        lines = []
        try:
            while True:
                line = self._line(deadline)
                if len(line) < 3 or not line[:3].isdigit():
                    fail(f"{what}: malformed reply line {line!r}")
                lines.append(line[4:])
                if len(line) == 3 or line[3] == " ":
                    return int(line[:3]), lines
        except socket.timeout:
            fail(f"{what}: no reply within {bound(seconds):.0f}s\n{self.dump()}")
        except EOFError:
            fail(f"{what}: connection closed by detad\n{self.dump()}")
        except ConnectionResetError:
            fail(f"{what}: connection reset by detad\n{self.dump()}")

    def expect(self, code, seconds, what):
        got, lines = self.reply(seconds, what)
        if got != code:
            fail(f"{what}: expected {code}, got {got} {' / '.join(lines)}\n{self.dump()}")
        return lines

    def command(self, line, code, seconds=10):
        self.send(line)
        return self.expect(code, seconds, line)

    def wait_closed(self, seconds):
        deadline = time.monotonic() + bound(seconds)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    fail(f"detad did not close the connection within {bound(seconds):.0f}s after DETA")
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                self.buf += chunk
        except socket.timeout:
            fail(f"detad did not close the connection within {bound(seconds):.0f}s after DETA")
        except ConnectionResetError:
            return

    def dump(self):
        return "transcript:\n  " + "\n  ".join(self.transcript[-20:])


def message(sender, rcpt, tag):
    body = [
        f"From: <{sender}>",
        f"To: <{rcpt}>",
        f"Subject: detad smoke {tag}",
        f"Message-ID: <{tag}@smoke.test>",
        "",
        f"Body of {tag}.",
        ".a line that starts with a dot",
        "..and one with two dots",
        "",
    ] + [f"filler line {i:03d} {'x' * 60}" for i in range(40)] + [f"end of {tag}"]
    return body


def data_bytes(lines):
    out = []
    for line in lines:
        out.append(("." + line) if line.startswith(".") else line)
    return ("\r\n".join(out) + "\r\n.\r\n").encode()


def check_content(path, lines, tag):
    with open(path, "rb") as f:
        got = f.read().replace(b"\r\n", b"\n").decode("utf-8", "replace")
    got_lines = got.split("\n")
    for want in (f"Subject: detad smoke {tag}", f"Body of {tag}.",
                 ".a line that starts with a dot", "..and one with two dots", f"end of {tag}"):
        if want not in got_lines:
            fail(f"{path}: line {want!r} missing or altered (dot-stuffing?); content:\n{got[:2000]}")
    if "..a line that starts with a dot" in got_lines:
        fail(f"{path}: dot-stuffing was not undone")


def ehlo(c):
    lines = c.command("EHLO smoke.test", 250)
    keywords = {l.split()[0].upper(): l for l in lines[1:] if l.split()}
    return keywords


# --------------------------------------------------------------------------
# The steps


def step_version_and_check(prefix, binary, conf, port):
    r = subprocess.run(prefix + [binary, "-V"], capture_output=True, timeout=bound(30))
    if r.returncode != 0:
        fail(f"-V exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    log(f"-V: {r.stdout.decode(errors='replace').strip()}")
    r = subprocess.run(prefix + [binary, "-c", conf, "-t"], capture_output=True, timeout=bound(30))
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        fail(f"-t exited {r.returncode}: {out}{r.stderr.decode(errors='replace')}")
    if f"127.0.0.1:{port}" not in out:
        fail(f"-t does not show the listen address 127.0.0.1:{port}:\n{out}")
    log("-t: configuration accepted")


def step_plain(port, maildir):
    sender, rcpt, tag = "alice@sender.test", "bob@local.test", "plain1"
    c = Smtp(port)
    try:
        c.expect(220, 10, "greeting")
        kw = ehlo(c)
        log(f"EHLO keywords: {' '.join(sorted(kw))}")
        for need in ("RDLV", "DETA"):
            if need not in kw:
                fail(f"EHLO does not advertise {need}\n{c.dump()}")
        c.command(f"MAIL FROM:<{sender}>", 250)
        c.command(f"RCPT TO:<{rcpt}>", 250)
        c.command("DATA", 354)
        c.send_raw(data_bytes(message(sender, rcpt, tag)))
        lines = c.expect(250, 30, "end of data")
        log(f"plain transaction accepted: 250 {lines[0]}")
        c.command("QUIT", 221)
    finally:
        c.close()
    newdir = os.path.join(maildir, "bob", "new")

    def delivered():
        try:
            files = [f for f in os.listdir(newdir) if not f.startswith(".")]
        except FileNotFoundError:
            return None
        return files
    files = wait_for(f"a message in {newdir}", delivered, 20)
    if len(files) != 1:
        fail(f"expected 1 message in {newdir}, found {files}")
    check_content(os.path.join(newdir, files[0]), message(sender, rcpt, tag), tag)
    tmpdir = os.path.join(maildir, "bob", "tmp")
    if os.path.isdir(tmpdir) and os.listdir(tmpdir):
        fail(f"leftovers in {tmpdir}: {os.listdir(tmpdir)}")
    log(f"delivered into Maildir: {os.path.join(newdir, files[0])}")


def rdlv_transaction(port, sender, rcpt, tag, maxtimer, conts):
    """RDLV transaction; after each 120: CONT while conts > 0, then DETA."""
    c = Smtp(port)
    try:
        c.expect(220, 10, "greeting")
        kw = ehlo(c)
        rdlv = kw.get("RDLV", "")
        if "DETA" not in kw or not rdlv:
            fail(f"EHLO does not advertise RDLV and DETA\n{c.dump()}")
        c.command(f"MAIL FROM:<{sender}>", 250)
        c.command(f"RCPT TO:<{rcpt}>", 250)
        c.command(f"RDLV maxtimer={maxtimer}", 200)
        c.command("DATA", 354)
        t0 = time.monotonic()
        c.send_raw(data_bytes(message(sender, rcpt, tag)))
        # 120 within the negotiated interval (at most maxtimer), plus slack.
        wait = maxtimer + 5
        for i in range(conts + 1):
            code, lines = c.reply(wait, f"keep-alive {i + 1} after end of data")
            if code != 120:
                fail(f"expected 120 while the pipe is still running, got {code} {' / '.join(lines)}"
                     f" after {time.monotonic() - t0:.1f}s\n{c.dump()}")
            log(f"120 #{i + 1} after {time.monotonic() - t0:.1f}s: {lines[0]}")
            if i < conts:
                c.send("CONT")
        c.send("DETA")
        c.expect(221, 10, "DETA")
        c.wait_closed(10)
        log(f"DETA: 221 and closed after {time.monotonic() - t0:.1f}s")
    finally:
        c.close()


def wait_pipe_output(out, rcpt, seconds):
    path = os.path.join(out, rcpt)
    wait_for(f"the pipe route to write {path}", lambda: os.path.exists(path), seconds, 0.2)
    return path


def step_rdlv_deta(port, out):
    sender, rcpt, tag = "carol@sender.test", "dave@slow.test", "deta1"
    rdlv_transaction(port, sender, rcpt, tag, maxtimer=2, conts=1)
    path = wait_pipe_output(out, rcpt, 30)
    check_content(path, message(sender, rcpt, tag), tag)
    log(f"detached job delivered through the pipe: {path}")


def step_flush(prefix, binary, conf):
    r = subprocess.run(prefix + [binary, "-c", conf, "flush"], capture_output=True, timeout=bound(30))
    if r.returncode != 0:
        fail(f"detad flush exited {r.returncode}: "
             f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    log("detad flush: ok")


def invocations(out):
    try:
        with open(os.path.join(out, "invocations")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def step_recovery(daemon, port, out, spool):
    sender, rcpt, tag = "erin@sender.test", "frank@crash.test", "crash1"
    before = len(invocations(out))
    rdlv_transaction(port, sender, rcpt, tag, maxtimer=2, conts=0)
    # Spool v2: one file per message in queue/ (content, then envelope records).
    queued = [f for f in os.listdir(os.path.join(spool, "queue")) if not f.startswith(".")]
    if not queued:
        fail("no message file in the spool queue while the detached job is running")
    wait_for("the crash.test pipe to start", lambda: len(invocations(out)) > before, 20)
    pids = daemon.kill_tree()
    log(f"kill -9 of detad and its children while the pipe runs: pids {pids}")
    if os.path.exists(os.path.join(out, rcpt)):
        fail("the message was delivered before the kill; the test proves nothing (pipe too fast?)")
    daemon.start(port)
    path = wait_pipe_output(out, rcpt, 40)
    check_content(path, message(sender, rcpt, tag), tag)
    log(f"after restart the message was delivered: {path} "
        f"(pipe started {len(invocations(out)) - before} times)")


def spool_leftovers(spool):
    left = {}
    for sub in ("queue", "tmp", "corrupt"):
        d = os.path.join(spool, sub)
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            names = []
        if names:
            left[sub] = names
    return left


def step_stop(daemon, spool):
    wait_for("the spool queue to empty", lambda: not spool_leftovers(spool).get("queue"), 20, 0.2)
    status = daemon.terminate()
    if status != 0:
        fail(f"detad exited with status {status} after SIGTERM (expected 0)")
    left = spool_leftovers(spool)
    if left:
        fail(f"spool not clean after stop: {left}")
    log("SIGTERM: exit 0, spool queue/tmp/corrupt empty")


def write_config(path, port, spool, maildir, out):
    # The pipe programs run without a shell: /bin/sh -c is explicit. They log
    # each start, sleep (so the job outlives two 120s at <= 2 s each, and the
    # kill), then write the message to OUT/<recipient> via a temporary name.
    # The sleeps are not scaled: the native /bin/sh runs at full speed even
    # when detad runs under qemu.
    def pipe(seconds):
        return (f'pipe:/bin/sh -c "echo {{id}} >> {out}/invocations; sleep {seconds}; '
                f'cat > {out}/{{recipient}}.part && mv {out}/{{recipient}}.part {out}/{{recipient}}"')
    text = f"""# detad smoke test configuration (generated)
hostname = smoke.test
listen = 127.0.0.1:{port}
spool = {spool}
fsync = yes
sessions = 4
workers = 2
rdlv_mintimer = 1
retry_min = 1
retry_max = 2
pipe_timeout = 120
route = local.test maildir:{maildir}
route = slow.test {pipe(8)}
route = crash.test {pipe(10)}
"""
    with open(path, "w") as f:
        f.write(text)


def main():
    global SCALE, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", help="the detad binary to test")
    ap.add_argument("--qemu", default="", help='run the binary under this, e.g. "qemu-aarch64" '
                    'or "qemu-arm -L /usr/arm-linux-gnueabihf"')
    ap.add_argument("--scale", type=float, default=None,
                    help="multiply every time bound (default 1, or 4 with --qemu)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the SMTP transcript")
    args = ap.parse_args()
    VERBOSE = args.verbose
    SCALE = args.scale if args.scale is not None else (4.0 if args.qemu else 1.0)

    binary = os.path.abspath(args.binary)
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        print(f"smoke.py: {args.binary}: not an executable file", file=sys.stderr)
        return 2
    prefix = shlex.split(args.qemu)

    tmp = tempfile.mkdtemp(prefix="detad-smoke-")
    spool, maildir, out = (os.path.join(tmp, d) for d in ("spool", "maildir", "out"))
    os.mkdir(out)
    # Pipe programs never run as root: detad started as root runs them as
    # nobody, who must be able to write here (and reach it).
    os.chmod(out, 0o777)
    os.chmod(tmp, 0o755)
    conf = os.path.join(tmp, "detad.conf")
    port = free_port()
    write_config(conf, port, spool, maildir, out)
    label = f"{' '.join(prefix)} {binary}".strip()
    log(f"testing {label} in {tmp}")
    daemon = Daemon(prefix, binary, conf, os.path.join(tmp, "detad.log"))
    ok = False
    try:
        step_version_and_check(prefix, binary, conf, port)
        daemon.start(port)
        step_plain(port, maildir)
        step_rdlv_deta(port, out)
        step_flush(prefix, binary, conf)
        step_recovery(daemon, port, out, spool)
        step_stop(daemon, spool)
        ok = True
    except SmokeFailure as e:
        print(f"[smoke] FAIL ({label}): {e}", file=sys.stderr)
        print(f"[smoke] last lines of {daemon.logpath}:\n{daemon.tail()}", file=sys.stderr)
    except subprocess.TimeoutExpired as e:
        print(f"[smoke] FAIL ({label}): {e}", file=sys.stderr)
    finally:
        if daemon.alive():
            daemon.kill_tree()
    if ok:
        log(f"PASS {label}")
        if not args.keep:
            subprocess.run(["rm", "-rf", tmp], check=False)
        return 0
    print(f"[smoke] kept {tmp} for inspection", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
