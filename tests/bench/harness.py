#!/usr/bin/env python3
"""harness.py -- `make bench`: detad side by side with Postfix, in one run.

Started by tests/bench/bench.sh (which installs the peers and checks the
binary); see that file for the options. Stdlib only. Everything listens on
127.0.0.1 on ports chosen free at run time; every wait is bounded in count and
time; everything started here is stopped on exit (Postfix with
`postfix -c DIR stop`, then by pid), and the work directory is removed unless
KEEP=1 or a run failed.

Servers (one instance each for the whole run, rounds interleaved):
  sink            smtp-sink alone: the protocol ceiling (stores nothing)
  postfix         a private Postfix instance (own config_directory,
                  queue_directory, data_directory under the work dir),
                  smtpd on 127.0.0.1, relayhost = an smtp-sink
  detad-relay     detad, route = * smtp:<an smtp-sink>
  detad-maildir   detad, route = * maildir:<work dir>
Profiles (smtp-source):
  many    -s SESSIONS          one message per connection
  single  -s 1                 one session, one message per connection
  reuse   -s SESSIONS -d       each session keeps its connection
Extras (BENCH_EXTRAS): idle (PSS per idle connection), rdlv (RDLV vs plain
with smtpload.py), deta (DETA -> close latency, p99), tls (a TLS-capable
detad and, when it runs, the private Postfix with a certificate: handshake
times, msg/s and CPU with STARTTLS, AUTH PLAIN and implicit TLS against the
same load in plaintext, PSS of idle TLS connections; throwaway CA and server
certificates made with openssl in the work directory).
"""

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import procstat  # noqa: E402
import smtpload  # noqa: E402

SMTP_SOURCE = os.environ.get("SMTP_SOURCE", "/usr/sbin/smtp-source")
SMTP_SINK = os.environ.get("SMTP_SINK", "/usr/sbin/smtp-sink")
POSTFIX = os.environ.get("POSTFIX", "/usr/sbin/postfix")
POSTCONF = os.environ.get("POSTCONF", "/usr/sbin/postconf")
SYNC_CALLS = ["fsync", "fdatasync", "syncfs", "sync", "sync_file_range", "sync_file_range2"]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


poll = procstat.poll


def wait_port(port, proc=None, secs=20.0):
    def up():
        if proc is not None and proc.poll() is not None:
            return None  # died: stop waiting
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return poll(lambda: up() is not False, secs) and (proc is None or proc.poll() is None)


def run(argv, timeout, **kw):
    """subprocess.run, bounded; returns CompletedProcess (rc 124 on timeout)."""
    try:
        return subprocess.run(argv, timeout=timeout, capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, 124, e.stdout or "", (e.stderr or "") + "\n(timeout)")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    """Nearest-rank percentile (q in 0..100)."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


# --------------------------------------------------------------------------- servers
class Server:
    key = label = ""
    has_queue = True

    def __init__(self, h, group_name, measured=True):
        self.h = h
        self.group = procstat.Group(group_name, h.cg if measured else None)
        self.port = None
        self.procs = []  # Popen objects we started (for cleanup)

    def popen(self, argv, log_path, env=None, stdout=None):
        logf = open(log_path, "ab")
        p = subprocess.Popen(
            self.group.wrap(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else logf,
            stderr=logf,
            env=env,
            start_new_session=True,
        )
        logf.close()
        self.procs.append(p)
        return p

    def delivered(self):
        return 0

    def queue_empty(self):
        return True

    def final_check(self):
        return True

    def after_run(self):
        pass

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.group.kill_all()


class Sink(Server):
    """smtp-sink; with count=True a thread reads its -c counters (mesg=N)."""

    def __init__(self, h, name, label, count=False, measured=True):
        super().__init__(h, name, measured)
        self.key, self.label, self.count = name, label, count
        self.has_queue = False
        self.measured = measured
        self.mesg = 0
        self.dir = os.path.join(h.work, name)
        os.makedirs(self.dir, exist_ok=True)

    def start(self):
        self.port = free_port()
        argv = [SMTP_SINK, "-u", "nobody", "-h", f"bench-{self.key}"]
        if self.count:
            argv.append("-c")
        argv += [f"127.0.0.1:{self.port}", "256"]
        p = self.popen(argv, os.path.join(self.dir, "log"), stdout=subprocess.PIPE if self.count else None)
        self.group.add_root(p.pid)
        if self.count:
            threading.Thread(target=self._reader, args=(p.stdout,), daemon=True).start()
        if not wait_port(self.port, p):
            raise RuntimeError(f"smtp-sink {self.key} does not listen on {self.port}")

    def _reader(self, f):
        """Until the sink's stdout closes (the sink exits; stop() ends it)."""
        tail = b""
        while True:
            chunk = f.read1(65536) if hasattr(f, "read1") else f.read(4096)
            if not chunk:
                return
            tail = (tail + chunk)[-256:]
            i = tail.rfind(b"mesg=")
            if i >= 0:
                num = b""
                for c in tail[i + 5:]:
                    if 48 <= c <= 57:
                        num += bytes([c])
                    else:
                        break
                if num and tail[i + 5 + len(num):i + 6 + len(num)]:  # terminated: a complete number
                    self.mesg = int(num)

    def delivered(self):
        return self.mesg


def link_kind(path):
    """`static` or `dynamic`, from the ELF program headers (a PT_INTERP
    segment means a dynamic loader is needed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return "not a 64-bit ELF"
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        types = [int.from_bytes(table[i * phentsize:i * phentsize + 4], "little") for i in range(phnum)]
        return "dynamic" if 3 in types else "static"
    except OSError:
        return "unknown"


def probe_durable_append(where, n=200):
    """Latencies (s) of one durable small write on `where`'s file system:
    append 200 bytes to a file and fdatasync it, n times. The floor of any
    reply that waits for the disk."""
    path = os.path.join(where, "probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        out = []
        for _ in range(n):
            os.write(fd, b"r" * 200)
            t = time.perf_counter()
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
        return out
    finally:
        os.close(fd)
        os.unlink(path)


OPENSSL_CNF = """# generated by tests/bench/harness.py: throwaway benchmark certificates
[req]
distinguished_name = dn
prompt = no
[dn]
CN = detad bench
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

TLS_KEY_ARGS = {
    "ec256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa3072": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
    "rsa4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
}
TLS_KEY_LABELS = {"ec256": "ECDSA P-256", "ec384": "ECDSA P-384", "rsa2048": "RSA 2048",
                  "rsa3072": "RSA 3072", "rsa4096": "RSA 4096"}


def make_tls_material(work, kinds):
    """A throwaway CA (ECDSA P-256), one server certificate per key kind
    (signed by it; SAN localhost and 127.0.0.1; valid 2 days), and an
    auth_users passwd-file with one user (`openssl passwd -6`), all under
    <work>/tls (mode 0700, removed with the work directory). Returns
    {"dir", "ca", "certs": {kind: (cert, key)}, "users", "user", "password"}."""
    d = os.path.join(work, "tls")
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    cnf = os.path.join(d, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write(OPENSSL_CNF)

    def ossl(*args):
        r = run(["openssl"] + list(args), 120)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()[-300:]}")
        return r.stdout

    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    ossl("genpkey", *TLS_KEY_ARGS["ec256"], "-out", ca_key)
    ossl("req", "-x509", "-config", cnf, "-extensions", "ca_ext", "-key", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=detad bench throwaway CA")
    certs = {}
    for i, kind in enumerate(kinds):
        if kind not in TLS_KEY_ARGS:
            raise SystemExit(f"bench: unknown TLS key kind {kind} ({' '.join(TLS_KEY_ARGS)})")
        key, csr, cert = (os.path.join(d, f"server-{kind}.{x}") for x in ("key", "csr", "pem"))
        ossl("genpkey", *TLS_KEY_ARGS[kind], "-out", key)
        ossl("req", "-new", "-config", cnf, "-key", key, "-out", csr, "-subj", "/CN=localhost")
        ossl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", str(1000 + i),
             "-days", "2", "-extfile", cnf, "-extensions", "server_ext", "-out", cert)
        os.chmod(key, 0o600)
        certs[kind] = (cert, key)
    password = "bench-" + os.urandom(9).hex()
    r = run(["openssl", "passwd", "-6", "-stdin"], 30, input=password + "\n")
    if r.returncode != 0 or not r.stdout.startswith("$6$"):
        raise RuntimeError(f"openssl passwd -6 failed: {r.stderr.strip()[-300:]}")
    users = os.path.join(d, "users")
    with open(users, "w") as f:
        f.write(f"bench:{r.stdout.strip()}\n")
    os.chmod(users, 0o600)
    return {"dir": d, "ca": ca, "certs": certs, "users": users, "user": "bench", "password": password}


class Detad(Server):
    def __init__(self, h, key, label, route_kind, extra=None):
        super().__init__(h, key)
        self.key, self.label, self.route_kind = key, label, route_kind
        self.dir = os.path.join(h.work, key)
        self.spool = os.path.join(self.dir, "spool")
        self.maildir = os.path.join(self.dir, "maildir")
        self.conf = os.path.join(self.dir, "detad.conf")
        self.extra = extra or {}
        self.upstream = None
        # implicit TLS (listen_tls), and the port STARTTLS is offered on
        lt = self.extra.get("listen_tls")
        self.tls_port = int(lt.rsplit(":", 1)[1]) if lt else None
        self.starttls_port = None
        os.makedirs(self.dir, exist_ok=True)

    def settings(self):
        s = {
            "fsync": self.h.fsync,
            "sessions": str(self.h.sessions),
            # The load comes from one address: allow it every session.
            "max_sessions_per_ip": str(self.h.sessions),
            "workers": str(self.h.workers),
            "spool_max_bytes": "0",
        }
        s.update(self.extra)
        return s

    def start(self):
        if self.route_kind == "relay":
            self.upstream = Sink(self.h, f"{self.key}-upstream", "upstream", count=True, measured=False)
            self.upstream.start()
            route = f"* smtp:127.0.0.1:{self.upstream.port}"
        elif self.route_kind == "maildir":
            route = f"* maildir:{self.maildir}"
        else:
            route = self.route_kind  # a full route value
        self.port = free_port()
        lines = [f"listen = 127.0.0.1:{self.port}", f"spool = {self.spool}", f"route = {route}"]
        lines += [f"{k} = {v}" for k, v in self.settings().items()]
        with open(self.conf, "w") as f:
            f.write("# generated by tests/bench/harness.py\n" + "\n".join(lines) + "\n")
        env = dict(os.environ, RUST_LOG=self.h.rust_log)
        p = self.popen([self.h.bin, "-c", self.conf], os.path.join(self.dir, "log"), env=env)
        self.group.add_root(p.pid)
        if not wait_port(self.port, p):
            raise RuntimeError(f"{self.key} does not listen on {self.port}: see {self.dir}/log")
        if self.tls_port and not wait_port(self.tls_port, p):
            raise RuntimeError(f"{self.key} does not listen on {self.tls_port} (listen_tls): see {self.dir}/log")
        if "tls_cert" in self.extra:
            self.starttls_port = self.port
        self.pid = p.pid

    def stop(self):
        super().stop()
        if self.upstream:
            self.upstream.stop()

    def queue_empty(self, how="dir"):
        return detad_queue_empty(self, how)

    def final_check(self):
        return detad_queue_empty(self, "cli")

    def delivered(self):
        if self.route_kind == "relay":
            return self.upstream.delivered()
        if self.route_kind == "maildir":
            return count_files(os.path.join(self.maildir, "rcpt", "new"))
        return 0

    def after_run(self):
        if self.route_kind == "maildir":
            for sub in ("new", "cur", "tmp"):
                d = os.path.join(self.maildir, "rcpt", sub)
                if os.path.isdir(d):
                    for e in os.scandir(d):
                        try:
                            os.unlink(e.path)
                        except OSError:
                            pass


def detad_queue_empty(d, how="dir"):
    """Whether detad's spool holds no message. THE one place that knows the
    spool layout: adapt it when the layout changes.
      dir: <spool>/queue/ has no entries (cheap; used while polling)
      cli: `detad -c CONF queue --json` prints nothing (the final check)"""
    if how == "cli":
        r = run([d.h.bin, "-c", d.conf, "queue", "--json"], 30)
        return r.returncode == 0 and not r.stdout.strip()
    try:
        with os.scandir(os.path.join(d.spool, "queue")) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return True


def count_files(d):
    try:
        with os.scandir(d) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


class Postfix(Server):
    """A private Postfix instance. Never touches /etc/postfix's instance:
    every command gets -c <our config_directory>."""

    key = "postfix"

    def __init__(self, h):
        super().__init__(h, "postfix")
        self.label = "Postfix (private, relay to smtp-sink)"
        self.dir = os.path.join(h.work, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.master = None
        self.upstream = None
        self.starttls_port = self.tls_port = None

    def tls_master_cf(self):
        """With the tls extra: a second smtpd offering STARTTLS and a third
        with implicit TLS (wrapper mode), with the bench certificate and
        max_idle = 2 s; the main smtpd stays as it was. Plus tlsmgr (PRNG,
        session ticket keys)."""
        t = self.h.tls
        if not t:
            return ""
        cert, key = t["certs"][self.h.tls_keys[0]]
        self.starttls_port, self.tls_port = free_port(), free_port()
        # max_idle=2: an smtpd of these two waits 2 s for a next client, not
        # 100 (no effect under load), so the idle-memory sets start from none.
        o = f"-o smtpd_tls_cert_file={cert} -o smtpd_tls_key_file={key} -o max_idle=2"
        return (f"127.0.0.1:{self.starttls_port} inet n - n - - smtpd -o smtpd_tls_security_level=may {o}\n"
                f"127.0.0.1:{self.tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes "
                f"-o smtpd_tls_security_level=encrypt {o}\n"
                "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")

    def pf(self, *args, timeout=60):
        r = run([POSTFIX, "-c", self.etc] + list(args), timeout)
        with open(os.path.join(self.dir, "postfix-cmd.log"), "a") as f:
            f.write(f"$ postfix -c {self.etc} {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}\n")
        return r

    def start(self):
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix")
        self.upstream = Sink(self.h, "postfix-upstream", "upstream", count=True, measured=False)
        self.upstream.start()
        self.port = free_port()
        procs = max(100, 2 * self.h.sessions + 20, self.h.idle_n + 20)
        main_cf = f"""# generated by tests/bench/harness.py: a private benchmark instance
compatibility_level = 3.6
config_directory = {self.etc}
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}
myhostname = bench-postfix.localdomain
mydomain = localdomain
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# nothing is delivered locally; everything goes to the smtp-sink
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
relay_domains =
relayhost = [127.0.0.1]:{self.upstream.port}
smtpd_relay_restrictions = permit_mynetworks, reject
# no DNS
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
default_process_limit = {procs}
"""
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main_cf)
        # chroot off (the private queue has no jail); only what receiving and relaying need
        master_cf = f"""# generated by tests/bench/harness.py
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
showq     unix  n       -       n       -       -       showq
postlog   unix-dgram n  -       n       -       1       postlogd
""" + self.tls_master_cf()
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master_cf)
        r = run([POSTCONF, "-c", self.etc, "-n"], 30)
        with open(os.path.join(self.dir, "postconf-n"), "w") as f:
            f.write(r.stdout + r.stderr)
        if self.pf("check").returncode != 0:
            raise RuntimeError(f"postfix -c {self.etc} check failed: see {self.dir}/postfix-cmd.log")
        # `postfix start` runs in the cgroup, so the master it forks and all
        # of the master's children are in it from the start.
        p = self.popen([POSTFIX, "-c", self.etc, "start"], os.path.join(self.dir, "postfix-start.log"))
        try:
            rc = p.wait(60)
        except subprocess.TimeoutExpired:
            rc = 124
        if rc != 0:
            raise RuntimeError(f"postfix -c {self.etc} start -> {rc}: see {self.dir}/postfix-start.log, {self.maillog}")
        pidfile = os.path.join(self.queue, "pid", "master.pid")

        def master_pid():
            try:
                with open(pidfile) as f:
                    txt = f.read().strip()
            except OSError:
                return None
            return int(txt) if txt.isdigit() and procstat.alive(int(txt)) else None

        self.master = poll(master_pid, 20, 0.1) or None
        if self.master is not None:
            self.group.add_root(self.master)
        if self.master is None:
            raise RuntimeError("no Postfix master pid")
        self.h.postfix_masters.append((self.master, procstat.starttime(self.master), self.etc))
        for port in (self.port, self.starttls_port, self.tls_port):
            if port and not wait_port(port, None):
                raise RuntimeError(f"Postfix smtpd does not listen on {port}: see {self.maillog}")

    def queue_files(self):
        n = 0
        for q in POSTFIX_QUEUES:
            for _root, _dirs, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n

    def queue_empty(self, how="dir"):
        return self.queue_files() == 0

    def delivered(self):
        return self.upstream.delivered()

    def stop(self):
        if self.master is not None and not procstat.alive(self.master):
            # Not us: e.g. tests/interop/install-deps.sh stops every Postfix
            # master on the machine, private ones included.
            log(f"Postfix master {self.master} was gone before `postfix stop`: killed from outside this run")
            self.h.notes.append(f"the Postfix master (pid {self.master}) died during the run, killed from "
                                f"outside it (e.g. a concurrent `make interop`: its install-deps.sh stops every "
                                f"Postfix master); Postfix runs after that failed")
            self.h.failed = True
        if self.master is not None:
            self.pf("stop", timeout=30)
            poll(lambda: not procstat.alive(self.master), 20, 0.1)
            if procstat.alive(self.master):
                log("Postfix master still running after `postfix stop`: postfix abort")
                self.pf("abort", timeout=30)
        super().stop()
        if self.upstream:
            self.upstream.stop()


# --------------------------------------------------------------------------- the harness
PROFILES = {
    "many": ("{S} sessions, one message per connection", lambda h: ["-s", str(h.sessions)]),
    "single": ("1 session, one message per connection", lambda h: ["-s", "1"]),
    "reuse": ("{S} sessions reusing their connections", lambda h: ["-s", str(h.sessions), "-d"]),
}


class Harness:
    def __init__(self, argv):
        a = [int(x) for x in argv[:4]]
        a += [3, 2000, 20, 4096][len(a):]
        self.rounds, self.messages, self.sessions, self.size = a
        if min(a) < 1:
            raise SystemExit("bench: ROUNDS MESSAGES SESSIONS SIZE must be positive")
        self.bin = os.path.abspath(os.environ.get("DETAD_BIN", "target/release/detad"))
        self.profiles = os.environ.get("BENCH_PROFILES", "many single reuse").split()
        self.server_keys = os.environ.get("BENCH_SERVERS", "sink postfix detad-relay detad-maildir").split()
        self.extras = os.environ.get("BENCH_EXTRAS", "idle rdlv deta tls").split()
        self.fsync = os.environ.get("BENCH_FSYNC", "yes")
        self.workers = env_int("BENCH_WORKERS", 2)
        self.count_messages = env_int("BENCH_COUNT_MESSAGES", min(self.messages, 500))
        deta = (os.environ.get("BENCH_DETA", "") or "200 10").split()
        self.deta_trials, self.deta_sessions = int(deta[0]), int(deta[1] if len(deta) > 1 else 10)
        self.deta_sleep = env_float("BENCH_DETA_SLEEP", 2.0)
        self.idle_n = env_int("BENCH_IDLE", self.sessions)
        self.rdlv_messages = env_int("BENCH_RDLV_MESSAGES", self.messages)
        self.tls_messages = env_int("BENCH_TLS_MESSAGES", self.messages)
        self.tls_handshakes = env_int("BENCH_TLS_HANDSHAKES", 200)
        self.tls_keys = os.environ.get("BENCH_TLS_KEYS", "ec256 rsa2048").split() or ["ec256"]
        self.tls_versions = os.environ.get("BENCH_TLS_VERSIONS", "1.3 1.2").split()
        # Python's TLS costs the client more CPU than the server: one client
        # process per usable core (at least 2), or it would be the bottleneck.
        self.tls_clients = env_int("BENCH_TLS_CLIENTS", max(2, len(os.sched_getaffinity(0))))
        for k in self.tls_keys:
            if k not in TLS_KEY_ARGS:
                raise SystemExit(f"bench: unknown BENCH_TLS_KEYS entry {k} ({' '.join(TLS_KEY_ARGS)})")
        for v in self.tls_versions:
            if v not in ("1.2", "1.3"):
                raise SystemExit(f"bench: unknown BENCH_TLS_VERSIONS entry {v} (1.2 1.3)")
        self.pss_interval = env_float("BENCH_PSS_INTERVAL", 0.05)
        self.timeout = env_float("BENCH_TIMEOUT", 300)
        self.drain_timeout = env_float("BENCH_DRAIN_TIMEOUT", 300)
        self.budget = env_float("BENCH_MAX_SECS", 5400)
        self.out = os.environ.get("BENCH_OUT", "target/bench/report.md")
        # Postfix logs every message (maillog_file); detad at `info` does too.
        self.rust_log = os.environ.get("BENCH_RUST_LOG", "info")
        self.keep = os.environ.get("KEEP", "") == "1"
        for p in self.profiles:
            if p not in PROFILES:
                raise SystemExit(f"bench: unknown profile {p} (many single reuse)")
        for k in self.server_keys:
            if k not in ("sink", "postfix", "detad-relay", "detad-maildir"):
                raise SystemExit(f"bench: unknown server {k}")
        self.t_start = time.monotonic()
        self.failed = False
        self.notes = []
        self.postfix_masters = []
        self.idle = None
        self.deta = None
        self.tls = None  # the throwaway certificates (make_tls_material)
        self.tls_targets = []  # the servers of the TLS loads (phase_tls)
        self.tls_idle = []
        self.tls_hs = []
        self.client_cpu = 0.0
        self.servers = []
        self.extra_servers = []
        self.runs = []  # dicts, one per timed run
        self.counts = {}  # (server, profile) -> {"calls": n, "messages": n, "by": {...}}
        base = os.environ.get("BENCH_DIR") or None
        self.work = tempfile.mkdtemp(prefix="detad-bench.", dir=base)
        os.chmod(self.work, 0o755)  # Postfix's daemons run as `postfix`
        if os.environ.get("BENCH_CGROUP", "1") == "0":
            self.cg = None
            self.notes.append("cgroups not used (BENCH_CGROUP=0): CPU from the /proc process tree")
        else:
            self.cg = procstat.CgroupParent(os.getpid())
            if self.cg.path is None:
                self.notes.append(f"cgroup v2 unavailable ({self.cg.why_not}): CPU from the /proc process tree")
                self.cg = None
        self.devno, self.dev_stat = procstat.block_device_of(self.work)
        self.strace = shutil.which("strace")
        self.sync_calls = self.supported_sync_calls() if self.strace else []

    # ------------------------------------------------------------------ helpers
    def budget_left(self):
        return self.budget - (time.monotonic() - self.t_start)

    def supported_sync_calls(self):
        ok = []
        for c in SYNC_CALLS:
            r = run([self.strace, "-f", "-c", "-o", "/dev/null", "-e", f"trace={c}", "/bin/true"], 20)
            if r.returncode == 0:
                ok.append(c)
        return ok

    def server(self, key):
        for s in self.servers:
            if s.key == key:
                return s
        return None

    def make_servers(self):
        if "tls" in self.extras:
            if not shutil.which("openssl"):
                self.notes.append("tls skipped: openssl not installed")
                self.extras.remove("tls")
            else:
                self.tls = make_tls_material(self.work, self.tls_keys)
                log(f"TLS: throwaway CA and server certificates ({' '.join(self.tls_keys)}) in {self.tls['dir']}")
        for k in self.server_keys:
            if k == "sink":
                s = Sink(self, "sink", "smtp-sink (ceiling, stores nothing)")
            elif k == "postfix":
                if os.geteuid() != 0:
                    self.notes.append("Postfix skipped: a private instance needs root")
                    continue
                s = Postfix(self)
            elif k == "detad-relay":
                s = Detad(self, "detad-relay", f"detad, relay to smtp-sink (fsync={self.fsync})", "relay")
            else:
                s = Detad(self, "detad-maildir", f"detad, into a Maildir (fsync={self.fsync})", "maildir")
            self.servers.append(s)
            log(f"starting {s.key}")
            s.start()
            extra = f", master pid {s.master}, config {s.etc}" if isinstance(s, Postfix) else ""
            log(f"  {s.key} on 127.0.0.1:{s.port} ({s.group.method}{extra})")

    # ------------------------------------------------------------------ one load run
    def drain(self, srv, base_delivered, n, deadline):
        """Wait until srv's queue is empty and n more messages were delivered.
        Returns (ok, the time it was seen). The final check (detad queue
        --json) runs after that time is taken."""
        if not srv.has_queue:
            return True, time.monotonic()
        secs = max(0.0, deadline - time.monotonic())
        done = poll(lambda: srv.queue_empty() and srv.delivered() - base_delivered >= n, secs, 0.02)
        t = time.monotonic()
        return bool(done and srv.final_check()), t

    def source_argv(self, srv, profile, n):
        return (
            [SMTP_SOURCE]
            + PROFILES[profile][1](self)
            + ["-m", str(n), "-l", str(self.size), "-M", "bench-client.localdomain",
               "-f", "bench@example.com", "-t", "rcpt@example.net", f"127.0.0.1:{srv.port}"]
        )

    def load(self, argv, srv):
        """Run a load client; returns (rc, stdout, stderr, t0, t1); its CPU
        seconds (user+sys, from getrusage of reaped children) in self.client_cpu."""
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=self.timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate(timeout=10)
            rc = 124
        t1 = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return rc, out, err, t0, t1

    def measured_run(self, srv, argv, n, what):
        os.sync()
        g = srv.group
        d0 = srv.delivered()
        cpu0, io0 = g.cpu_usec(), g.io_written()
        cgio0 = g.cgroup_io_wbytes(self.devno)
        dev0 = procstat.device_sectors_written(self.dev_stat)
        sampler = procstat.PeakSampler(g, self.pss_interval, self.timeout + self.drain_timeout + 60)
        sampler.start()
        rc, out, err, t0, t1 = self.load(argv, srv)
        drained, t2 = self.drain(srv, d0, n, t1 + self.drain_timeout) if rc == 0 else (False, time.monotonic())
        peak = sampler.stop()
        cpu1, io1 = g.cpu_usec(), g.io_written()
        os.sync()  # the writeback the run left behind counts at the device
        dev1 = procstat.device_sectors_written(self.dev_stat)
        cgio1 = g.cgroup_io_wbytes(self.devno)
        delivered = srv.delivered() - d0
        srv.after_run()
        ok = rc == 0 and (drained or not srv.has_queue)
        r = {
            "server": srv.key, "what": what, "n": n, "rc": rc, "ok": ok,
            "accept_s": t1 - t0, "e2e_s": (t2 - t0) if srv.has_queue else None,
            "accepted": n / (t1 - t0) if rc == 0 else None,
            "e2e": (n / (t2 - t0) if drained else None) if srv.has_queue else None,
            "cpu_s": (cpu1 - cpu0) / 1e6, "io": io1 - io0,
            "cgio": (cgio1 - cgio0) if cgio0 is not None and cgio1 is not None else None,
            "dev": ((dev1 - dev0) * 512) if dev0 is not None and dev1 is not None else None,
            "pss_kb": peak, "pss_procs": sampler.peak_procs, "samples": sampler.samples,
            "sampler_cpu_s": sampler.cpu_s, "client_cpu_s": self.client_cpu, "delivered": delivered, "client": out.strip()[-2000:],
        }
        if not ok:
            self.failed = True
            why = f"rc={rc}" + ("" if rc != 0 else f", not drained after {self.drain_timeout:.0f}s "
                                f"(delivered {delivered}/{n})")
            log(f"  FAILED {srv.key} {what}: {why}; {err.strip()[-300:]}")
            r["error"] = why + " " + err.strip()[-300:]
        return r

    # ------------------------------------------------------------------ phases
    def phase_idle(self):
        if "idle" not in self.extras:
            return
        self.idle = []
        log(f"idle connections: PSS before and with {self.idle_n} idle connections")
        for srv in self.servers:
            n = self.idle_n
            if isinstance(srv, Detad):
                n = min(n, self.sessions)  # more would wait unanswered in detad's hand-off queue
            time.sleep(1.0)
            base_samples = []
            for _ in range(5):
                base_samples.append(srv.group.pss_kb()[0])
                time.sleep(0.1)
            base = median(base_samples)
            conns, errors = smtpload.open_idle(srv.port, n)
            time.sleep(1.0)
            loaded_samples = []
            for _ in range(5):
                loaded_samples.append(srv.group.pss_kb())
                time.sleep(0.1)
            loaded = median([x[0] for x in loaded_samples])
            procs = max(x[1] for x in loaded_samples)
            smtpload.close_idle(conns)
            per = (loaded - base) / len(conns) if conns else None
            self.idle.append({"server": srv.key, "n": len(conns), "errors": errors[:3], "base_kb": base,
                              "loaded_kb": loaded, "per_conn_kb": per, "procs": procs})
            log(f"  idle {srv.key}: {len(conns)} connections, PSS {base} -> {loaded} KiB"
                + (f", {per:.1f} KiB each" if per is not None else "") + (f"; errors {errors[:2]}" if errors else ""))

    def phase_rounds(self):
        n = self.messages
        for r in range(1, self.rounds + 1):
            for prof in self.profiles:
                order = self.servers[(r - 1) % len(self.servers):] + self.servers[:(r - 1) % len(self.servers)]
                for srv in order:
                    if self.budget_left() < 0:
                        self.notes.append(f"time budget BENCH_MAX_SECS={self.budget:.0f} exhausted: runs skipped")
                        return
                    res = self.measured_run(srv, self.source_argv(srv, prof, n), n, prof)
                    res["round"] = r
                    self.runs.append(res)
                    e2e = f"{res['e2e']:.0f}" if res["e2e"] else "-"
                    acc = f"{res['accepted']:.0f}" if res["accepted"] else "FAIL"
                    log(f"round {r} {prof:<6} {srv.key:<13} accepted {acc:>6} msg/s  end-to-end {e2e:>6} msg/s  "
                        f"CPU {res['cpu_s']:.2f}s  PSS {res['pss_kb'] / 1024:.1f} MiB")

    def phase_rdlv(self):
        if "rdlv" not in self.extras:
            return
        targets = [s for s in self.servers if isinstance(s, Detad)]
        if not targets:
            self.notes.append("rdlv skipped: no detad server in BENCH_SERVERS")
            return
        n = self.rdlv_messages
        for r in range(1, self.rounds + 1):
            for srv in targets:
                modes = ["plain", "rdlv"] if r % 2 else ["rdlv", "plain"]
                for mode in modes:
                    if self.budget_left() < 0:
                        return
                    argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "send", "--port", str(srv.port),
                            "--messages", str(n), "--sessions", str(self.sessions), "--size", str(self.size),
                            "--deadline", str(self.timeout - 5)] + (["--rdlv"] if mode == "rdlv" else [])
                    res = self.measured_run(srv, argv, n, f"smtpload-{mode}")
                    res["round"] = r
                    self.check_client(res, srv, mode)
                    self.runs.append(res)
                    acc = f"{res['accepted']:.0f}" if res["accepted"] else "FAIL"
                    log(f"round {r} {mode:<6} {srv.key:<13} accepted {acc:>6} msg/s  CPU {res['cpu_s']:.2f}s "
                        f"(smtpload.py)")

    def check_client(self, res, srv, mode):
        """An smtpload.py run with failed transactions is a failed run."""
        try:
            cj = json.loads(res["client"].splitlines()[-1])
            if cj.get("failed"):
                res["ok"] = False
                res["accepted"] = res["e2e"] = None
                res["error"] = f"{cj['failed']} failed: {cj['errors'][:2]}"
                self.failed = True
                log(f"  FAILED {srv.key} {mode}: {res['error']}")
        except (ValueError, IndexError, KeyError):
            pass

    # ------------------------------------------------------------------ TLS
    def tls_detad(self, kind, key_suffix=""):
        """A detad relaying to an smtp-sink, like detad-relay, with the
        certificate of `kind`, STARTTLS on its port, implicit TLS on a
        second one (listen_tls) and the bench user for AUTH."""
        cert, key = self.tls["certs"][kind]
        extra = {"tls_cert": cert, "tls_key": key, "auth_users": self.tls["users"],
                 "listen_tls": f"127.0.0.1:{free_port()}"}
        k = "detad-tls" + key_suffix
        srv = Detad(self, k, f"detad, relay to smtp-sink, {TLS_KEY_LABELS[kind]} (fsync={self.fsync})",
                    "relay", extra)
        self.extra_servers.append(srv)
        log(f"starting {k} ({TLS_KEY_LABELS[kind]}; STARTTLS and implicit TLS)")
        srv.start()
        return srv

    def tls_port(self, srv, mode):
        """Implicit TLS on its own port; plaintext and STARTTLS on the port
        that offers STARTTLS (detad: its listen; Postfix: the TLS smtpd)."""
        return srv.tls_port if mode == "implicit" else srv.starttls_port

    def phase_tls(self):
        if "tls" not in self.extras or not self.tls:
            return
        if self.budget_left() < 0:
            self.notes.append("tls skipped: time budget exhausted")
            return
        targets = [self.tls_detad(self.tls_keys[0])]
        pf = self.server("postfix")
        if pf is not None and pf.starttls_port:
            targets.append(pf)
        self.tls_targets = targets
        ctx = smtpload.tls_context(self.tls["ca"])
        # 1. idle connections (detad: fresh servers of their own)
        for srv in targets:
            self.tls_idle_run(srv, ctx)
        # 2. handshake times
        for srv in targets:
            kinds = self.tls_keys if isinstance(srv, Detad) else self.tls_keys[:1]
            for kind in kinds:
                hs = srv if kind == self.tls_keys[0] else self.tls_detad(kind, f"-{kind}")
                for version in self.tls_versions:
                    for mode in ("starttls", "implicit"):
                        if self.budget_left() < 0:
                            return
                        self.tls_hs.append(self.tls_handshake_run(hs, srv.key, kind, version, mode))
                if hs is not srv:
                    hs.stop()
        # 3. load: plaintext, STARTTLS, STARTTLS + AUTH PLAIN, implicit TLS
        n = self.tls_messages
        for r in range(1, self.rounds + 1):
            for srv in targets:
                modes = ["plain", "starttls", "starttls-auth", "implicit"]
                if not isinstance(srv, Detad):
                    modes.remove("starttls-auth")  # the private Postfix has no SASL
                modes = modes[(r - 1) % len(modes):] + modes[:(r - 1) % len(modes)]
                for mode in modes:
                    if self.budget_left() < 0:
                        self.notes.append("time budget exhausted: some TLS runs skipped")
                        return
                    tls = {"plain": "none", "starttls-auth": "starttls"}.get(mode, mode)
                    port = self.tls_port(srv, tls)
                    argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "send", "--port", str(port),
                            "--messages", str(n), "--sessions", str(self.sessions), "--size", str(self.size),
                            "--deadline", str(self.timeout - 5), "--io-timeout", "30",
                            "--procs", str(self.tls_clients), "--tls", tls]
                    if tls != "none":
                        argv += ["--cafile", self.tls["ca"]]
                    if mode == "starttls-auth":
                        argv += ["--auth", f"{self.tls['user']}:{self.tls['password']}"]
                    res = self.measured_run(srv, argv, n, f"tls-{mode}")
                    res["round"] = r
                    busy = res["e2e_s"] or res["accept_s"]
                    res["server_cores"] = res["cpu_s"] / busy if busy else None
                    res["client_cores"] = res["client_cpu_s"] / res["accept_s"] if res["accept_s"] else None
                    self.check_client(res, srv, mode)
                    self.runs.append(res)
                    acc = f"{res['accepted']:.0f}" if res["accepted"] else "FAIL"
                    e2e = f"{res['e2e']:.0f}" if res["e2e"] else "-"
                    log(f"round {r} tls-{mode:<13} {srv.key:<9} accepted {acc:>5} msg/s  end-to-end {e2e:>5} msg/s  "
                        f"CPU {res['cpu_s']:.2f}s  client CPU {res['client_cpu_s']:.2f}s  "
                        f"PSS {res['pss_kb'] / 1024:.1f} MiB")
        targets[0].stop()

    def tls_idle_run(self, srv, ctx):
        """PSS with N idle connections: plaintext, STARTTLS, implicit TLS.
        detad: each set on a fresh server (the first certificate). Postfix:
        one set after the other, each once the smtpd processes of the set
        before have exited (max_idle 2 s on its TLS services); the smtpd
        processes of the main service (left from earlier runs, exiting when
        they will) are not counted."""
        detad = isinstance(srv, Detad)
        n = min(self.idle_n, self.sessions) if detad else self.idle_n
        main_service = f"127.0.0.1:{srv.port}"

        def skip(pid):  # Postfix: an smtpd of the main service (master starts it with -n SERVICE)
            argv = procstat.cmdline(pid)
            return not detad and any(a == main_service for a in argv[1:])

        def pss(s):
            """{pid: median Pss KiB over 5 samples}."""
            xs = []
            for _ in range(5):
                xs.append(s.group.pss_by_pid(skip))
                time.sleep(0.1)
            return {p: median([x[p] for x in xs if p in x]) for p in set().union(*xs)}

        base_procs = None
        for mode in ("none", "starttls", "implicit"):
            s = self.tls_detad(self.tls_keys[0], f"-idle-{mode}") if detad else srv
            if base_procs is not None:  # Postfix: until the smtpds of the set before are gone
                poll(lambda: s.group.pss_kb(skip)[1] <= base_procs, 20, 0.25)
            time.sleep(1.0)
            b = pss(s)
            before, procs0 = sum(b.values()), len(b)
            if base_procs is None and not detad:
                base_procs = procs0
            conns, errors = smtpload.open_idle(self.tls_port(s, mode), n, 10.0, mode, ctx)
            time.sleep(1.0)
            a = pss(s)
            loaded, procs = sum(a.values()), len(a)
            smtpload.close_idle(conns)
            if detad:
                s.stop()
            # new processes count whole, the others by their growth; one that
            # exited meanwhile (a Postfix process at its max_idle) is left out
            grown = sum(v - b.get(p, 0) for p, v in a.items())
            per = grown / len(conns) if conns else None
            self.tls_idle.append({"server": srv.key, "label": srv.label, "mode": mode, "n": len(conns),
                                  "errors": errors[:3], "before_kb": before, "loaded_kb": loaded,
                                  "per_conn_kb": per, "procs": procs, "procs_before": procs0})
            if errors:
                self.failed = True
            log(f"  idle {mode:<8} {s.key}: {len(conns)} connections, PSS {before} KiB ({procs0} processes) -> "
                f"{loaded} KiB ({procs})" + (f", {per:.1f} KiB each" if per is not None else "")
                + (f"; errors {errors[:2]}" if errors else ""))

    def tls_handshake_run(self, srv, target_key, kind, version, mode):
        argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "handshake", "--port",
                str(self.tls_port(srv, mode)), "--tls", mode, "--cafile", self.tls["ca"],
                "--tls-version", version, "--count", str(self.tls_handshakes), "--io-timeout", "15",
                "--deadline", str(self.timeout - 5)]
        cpu0 = srv.group.cpu_usec()
        rc, out, err, t0, t1 = self.load(argv, srv)
        cpu1 = srv.group.cpu_usec()
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"ok": 0, "failed": self.tls_handshakes, "samples": [], "versions": {}, "ciphers": {},
                   "errors": [err.strip()[-300:]]}
        res.update({"server": target_key, "kind": kind, "version": version, "mode": mode,
                    "server_cpu_s": (cpu1 - cpu0) / 1e6, "client_cpu_s": res.get("cpu_s"), "wall_s": t1 - t0})
        if res["failed"] or rc != 0:
            self.failed = True
        xs = res["samples"]
        log(f"  handshakes {target_key} {kind} TLS {version} {mode:<8}: {res['ok']} ok, {res['failed']} failed; "
            f"p50 {(percentile(xs, 50) or 0) * 1000:.2f} ms p99 {(percentile(xs, 99) or 0) * 1000:.2f} ms; "
            f"{res.get('versions')} {res.get('ciphers')}" + (f"; errors {res['errors'][:2]}" if res["errors"] else ""))
        return res

    def phase_deta(self):
        if "deta" not in self.extras:
            return
        # The 221 waits until the detached mark is durable (a crash after it
        # must not drop the job): with fsync=yes one durable write of the
        # spool's disk is the floor, so the run also measures that write
        # alone, and DETA with fsync=no (the protocol path without it).
        self.deta = []
        self.deta_probe = probe_durable_append(self.work)
        for fsync in ([self.fsync, "no"] if self.fsync == "yes" else [self.fsync]):
            self.deta.append(self.deta_run(fsync))

    def deta_run(self, fsync):
        sessions = self.deta_sessions
        route = f'* pipe:/bin/sh -c "cat >/dev/null; exec sleep {self.deta_sleep:g}"'
        extra = {
            "fsync": fsync,
            "rdlv_mintimer": "1",
            "sessions": str(max(sessions, 1)),
            "max_sessions_per_ip": str(max(sessions, 1)),
            "workers": str(min(256, sessions * 4)),
            "max_detached": str(self.deta_trials + sessions),
            "max_inflight_per_sender": "10000",
        }
        key = f"detad-deta-fsync-{fsync}"
        srv = Detad(self, key, f"detad, slow pipe route (fsync={fsync})", route, extra)
        self.extra_servers.append(srv)
        log(f"starting {key} (pipe sleeps {self.deta_sleep:g}s, RDLV maxtimer=1)")
        srv.start()
        argv = [sys.executable, os.path.join(HERE, "smtpload.py"), "deta", "--port", str(srv.port),
                "--trials", str(self.deta_trials), "--sessions", str(sessions), "--size", str(self.size),
                "--maxtimer", "1", "--io-timeout", "15", "--deadline", str(self.timeout - 5)]
        rc, out, err, t0, t1 = self.load(argv, srv)
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"ok": 0, "failed": self.deta_trials, "errors": [err.strip()[-300:]], "to_221": [], "to_close": []}
        # The detached jobs finish on their own; wait (bounded) for the spool to empty.
        poll(srv.queue_empty, self.deta_sleep * self.deta_trials / max(1, min(256, sessions * 4)) + 60, 0.1)
        res["drained"] = srv.queue_empty()
        res["sessions"] = sessions
        res["fsync"] = fsync
        if res["failed"] or not res["drained"]:
            self.failed = True
        c = res["to_close"]
        log(f"  DETA (fsync={fsync}): {res['ok']} ok, {res['failed']} failed; DETA->close p50 "
            f"{(percentile(c, 50) or 0) * 1000:.2f} ms p99 {(percentile(c, 99) or 0) * 1000:.2f} ms")
        srv.stop()
        return res

    def phase_count(self):
        if self.count_messages <= 0:
            self.notes.append("fsync counting skipped (BENCH_COUNT_MESSAGES=0)")
            return
        if not self.strace:
            self.notes.append("fsync counting skipped: strace not installed")
            return
        n = self.count_messages
        for prof in self.profiles:
            for srv in self.servers:
                if self.budget_left() < 0:
                    self.notes.append("time budget exhausted: some fsync counts skipped")
                    return
                self.counts[(srv.key, prof)] = self.count_run(srv, prof, n)

    def count_run(self, srv, prof, n):
        out = os.path.join(self.work, f"strace-{srv.key}-{prof}.txt")
        pids = srv.group.pids()
        argv = [self.strace, "-f", "-c", "-o", out, "-e", "trace=" + ",".join(self.sync_calls)]
        for p in pids:
            argv += ["-p", str(p)]
        errf = open(os.path.join(self.work, "strace.err"), "ab")
        st = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        errf.close()
        if not poll(lambda: all(traced(p) for p in pids), 15):
            log(f"  strace did not attach to every process of {srv.key} within 15s")
        time.sleep(0.2)
        d0 = srv.delivered()
        rc, _out, err, _t0, t1 = self.load(self.source_argv(srv, prof, n), srv)
        drained = rc == 0 and self.drain(srv, d0, n, t1 + self.drain_timeout)[0]
        srv.after_run()
        st.send_signal(signal.SIGINT)
        try:
            st.wait(30)
        except subprocess.TimeoutExpired:
            st.kill()
            st.wait(10)
        by = parse_strace_c(out, self.sync_calls)
        ok = rc == 0 and (drained or not srv.has_queue)
        calls = sum(by.values())
        log(f"count {prof:<6} {srv.key:<13} {calls} sync calls for {n} messages {by}" + ("" if ok else " (FAILED run)"))
        if not ok:
            self.failed = True
        return {"calls": calls, "messages": n, "by": by, "ok": ok}

    # ------------------------------------------------------------------ report
    def machine(self):
        cpu = "?"
        for line in (open("/proc/cpuinfo").read().splitlines()):
            k, _, v = line.partition(":")
            if k.strip() in ("model name", "Hardware", "cpu model", "Model") and v.strip():
                cpu = v.strip()
                break
        mem = "?"
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
        fstype, src, mp = procstat.filesystem_of(self.work)
        pf = run([POSTCONF, "-d", "-h", "mail_version"], 10).stdout.strip() or "?"
        dv = run([self.bin, "-V"], 10).stdout.strip() or "?"
        return {
            "cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "kernel": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}", "mem": mem,
            "fs": f"{fstype} on {src} (mounted on {mp}; block device {self.devno}"
                  + ("" if self.dev_stat else ", no block-device stats") + ")",
            "postfix": pf, "detad": f"{dv}, {self.bin} ({link_kind(self.bin)}), {os.path.getsize(self.bin):,} bytes",
            "python": sys.version.split()[0],
            "load": open("/proc/loadavg").read().split()[:3],
        }

    def report(self):
        m = self.machine()
        L = []
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        L.append(f"# detad bench, {now}")
        L.append("")
        L.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable), {m['mem']} RAM, {m['kernel']}")
        L.append(f"- spool filesystem: {m['fs']}")
        L.append(f"- detad {m['detad']}; Postfix {m['postfix']}; Python {m['python']}; load average at the end "
                 f"{' '.join(m['load'])}")
        L.append(f"- run: {self.rounds} interleaved rounds x {self.messages} messages of {self.size} bytes, "
                 f"{self.sessions} sessions; detad fsync={self.fsync} sessions={self.sessions} "
                 f"workers={self.workers} RUST_LOG={self.rust_log} (stderr to a file); Postfix stock except the "
                 f"private-instance settings (maillog_file in the work directory)")
        cpu_how = ("cgroup v2 cpu.stat usage_usec of the server's own cgroup (every process, exited ones included)"
                   if self.cg else "the /proc process tree of the server (utime+stime+cutime+cstime)")
        io_how = ("cgroup io.stat wbytes" if self.cg and "io" in self.cg.controllers
                  else "/proc/PID/io write_bytes - cancelled_write_bytes summed over the server's processes")
        L.append(f"- CPU: {cpu_how}; written: {io_how}; device: /sys/dev/block/{self.devno}/stat sectors written "
                 f"(all writers on that device, journal included, after a final sync)")
        L.append("")
        L += self.main_tables()
        L += self.extra_tables()
        L.append("")
        L.append("Notes:")
        L.append("")
        L.append("- accepted = messages / time for the load client to finish (every message got its 250); "
                 "end-to-end = messages / time from the first connection until the queue is empty and every "
                 "message reached the smtp-sink or the Maildir; medians over the rounds; ratios are between "
                 "medians of this run.")
        L.append("- CPU s/1000 = CPU seconds of all the server's processes from the start of the load until the "
                 "queue is empty, per 1000 messages (the upstream smtp-sink and the load client are not counted).")
        L.append(f"- peak PSS = the largest sum of Pss (/proc/PID/smaps_rollup) over the server's processes, "
                 f"sampled every {self.pss_interval * 1000:.0f} ms during the run; median of the rounds.")
        if self.counts:
            L.append(f"- fsyncs/msg: calls of {', '.join(self.sync_calls)} by the server's processes (strace -f -c, "
                     f"threads and children followed) in a separate, untimed run of {self.count_messages} "
                     f"messages per profile, until the queue was empty, divided by the messages.")
        L.append("- written KiB/msg: bytes the server's processes made dirty on any filesystem "
                 "(page granular, at the time of writing; files deleted before writeback are subtracted); "
                 "device KiB/msg: the whole block device during the run, including the ext4 journal and "
                 "anything else writing to it on this machine (noisy).")
        samp = [r["sampler_cpu_s"] / max(r["e2e_s"] or r["accept_s"], 1e-9)
                for r in self.runs if r.get("sampler_cpu_s") is not None]
        if samp:
            L.append(f"- the PSS sampler itself used {median(samp) * 100:.1f}% of one core (median), outside "
                     f"the measured cgroups but on the same CPUs.")
        peaks = [(s.label, s.group.memory_peak()) for s in self.servers]
        if any(v is not None for _l, v in peaks):
            L.append("- cgroup memory.peak over the whole run (cross-check of PSS; counts page cache too): "
                     + "; ".join(f"{lab} {v / 1048576:.1f} MiB" for lab, v in peaks if v is not None))
        elif self.cg:
            L.append("- no cgroup memory.peak cross-check: the cgroup v2 memory controller is not available "
                     "here (on a hybrid v1/v2 host the v1 hierarchy owns it, and is left alone)")
        for n in self.notes:
            L.append(f"- {n}")
        L.append("")
        L += self.round_table()
        return "\n".join(L) + "\n"

    def agg(self, key, what, field):
        return median([r[field] for r in self.runs if r["server"] == key and r["what"] == what and r["ok"]])

    def main_tables(self):
        L = []
        pf = "postfix" if self.server("postfix") else None
        sk = "sink" if self.server("sink") else None
        for prof in self.profiles:
            title = PROFILES[prof][0].format(S=self.sessions)
            src = " ".join(PROFILES[prof][1](self))
            L.append(f"## {title} (smtp-source {src} -m {self.messages} -l {self.size})")
            L.append("")
            L.append("| server | accepted msg/s | vs Postfix | vs sink | end-to-end msg/s | vs Postfix "
                     "| CPU s/1000 msg | peak PSS MiB | fsyncs/msg | written KiB/msg | device KiB/msg |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for s in self.servers:
                acc = self.agg(s.key, prof, "accepted")
                e2e = self.agg(s.key, prof, "e2e")
                cpu = self.agg(s.key, prof, "cpu_s")
                pss = self.agg(s.key, prof, "pss_kb")
                io = self.agg(s.key, prof, "cgio" if self.cg and "io" in self.cg.controllers else "io")
                dev = self.agg(s.key, prof, "dev")
                n = self.messages
                pacc = self.agg(pf, prof, "accepted") if pf else None
                sacc = self.agg(sk, prof, "accepted") if sk else None
                pe2e = self.agg(pf, prof, "e2e") if pf else None
                c = self.counts.get((s.key, prof))
                L.append("| " + " | ".join([
                    s.label,
                    fmt(acc, "{:.0f}"),
                    fmt(ratio(acc, pacc), "{:.2f}"),
                    fmt(ratio(acc, sacc), "{:.2f}"),
                    fmt(e2e, "{:.0f}") if s.has_queue else "—",
                    fmt(ratio(e2e, pe2e), "{:.2f}") if s.has_queue else "—",
                    fmt(cpu * 1000 / n if cpu is not None else None, "{:.2f}"),
                    fmt(pss / 1024 if pss is not None else None, "{:.1f}"),
                    fmt(c["calls"] / c["messages"] if c else None, "{:.2f}"),
                    fmt(io / n / 1024 if io is not None else None, "{:.1f}"),
                    fmt(dev / n / 1024 if dev is not None else None, "{:.1f}"),
                ]) + " |")
            L.append("")
        return L

    def extra_tables(self):
        L = []
        rd = [s for s in self.servers if isinstance(s, Detad)]
        if "rdlv" in self.extras and rd:
            L.append(f"## RDLV with instant delivery vs plain (smtpload.py: {self.sessions} sessions, one message "
                     f"per connection, {self.rdlv_messages} messages, {self.rounds} rounds)")
            L.append("")
            L.append("| server | mode | accepted msg/s | end-to-end msg/s | CPU s/1000 msg | peak PSS MiB "
                     "| RDLV/plain msg/s (e2e) | RDLV/plain CPU | client CPU s/1000 msg |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for s in rd:
                fields = ("accepted", "e2e", "cpu_s", "pss_kb", "client_cpu_s")
                base = {f: self.agg(s.key, "smtpload-plain", f) for f in fields}
                for mode in ("plain", "rdlv"):
                    v = {f: self.agg(s.key, f"smtpload-{mode}", f) for f in fields}
                    n = self.rdlv_messages
                    L.append("| " + " | ".join([
                        s.label, "RDLV" if mode == "rdlv" else "plain",
                        fmt(v["accepted"], "{:.0f}"), fmt(v["e2e"], "{:.0f}"),
                        fmt(v["cpu_s"] * 1000 / n if v["cpu_s"] is not None else None, "{:.2f}"),
                        fmt(v["pss_kb"] / 1024 if v["pss_kb"] is not None else None, "{:.1f}"),
                        fmt(ratio(v["e2e"], base["e2e"]), "{:.2f}") if mode == "rdlv" else "",
                        fmt(ratio(v["cpu_s"], base["cpu_s"]), "{:.2f}") if mode == "rdlv" else "",
                        fmt(v["client_cpu_s"] * 1000 / n if v["client_cpu_s"] is not None else None, "{:.2f}"),
                    ]) + " |")
            L.append("")
        if "deta" in self.extras and getattr(self, "deta", None):
            ms = lambda x: fmt(x * 1000 if x is not None else None, "{:.2f}")  # noqa: E731
            L.append(f"## DETA -> socket closed (smtpload.py deta: {self.deta_trials} transactions over "
                     f"{self.deta_sessions} sessions, RDLV maxtimer=1, rdlv_mintimer=1, pipe route sleeping "
                     f"{self.deta_sleep:g}s)")
            L.append("")
            L.append("| fsync | measured from the DETA write to | n | p50 ms | p90 ms | p99 ms | max ms |")
            L.append("|---|---|---:|---:|---:|---:|---:|")
            extras = []
            for d in self.deta:
                c, a = d.get("to_close", []), d.get("to_221", [])
                for what, xs in (("the 221 reply read", a), ("EOF (server closed the socket)", c)):
                    L.append(f"| {d['fsync']} | {what} | {len(xs)} | {ms(percentile(xs, 50))} | "
                             f"{ms(percentile(xs, 90))} | {ms(percentile(xs, 99))} | {ms(max(xs) if xs else None)} |")
                extra = f"fsync={d['fsync']}: {d['ok']} ok, {d['failed']} failed"
                extra += "" if d.get("drained") else ", spool NOT drained"
                if d.get("errors"):
                    extra += f"; first errors: {d['errors'][:2]}"
                extras.append(extra)
            p = getattr(self, "deta_probe", None) or []
            if p:
                L.append(f"| (the disk alone) | append 200 bytes + fdatasync, {len(p)} times, in the spool's "
                         f"directory | {len(p)} | {ms(percentile(p, 50))} | {ms(percentile(p, 90))} | "
                         f"{ms(percentile(p, 99))} | {ms(max(p))} |")
            L.append("")
            L.append("(" + "; ".join(extras) + ")")
            L.append("")
        L += self.tls_tables()
        if "idle" in self.extras and getattr(self, "idle", None):
            L.append("## Memory of an idle connection (connected, greeted, after EHLO; fresh servers, "
                     "before any load)")
            L.append("")
            L.append("| server | idle connections | PSS before MiB | PSS with them MiB | processes | KiB per connection |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for i in self.idle:
                s = self.server(i["server"])
                L.append(f"| {s.label} | {i['n']} | {fmt(i['base_kb'] / 1024, '{:.2f}')} | "
                         f"{fmt(i['loaded_kb'] / 1024, '{:.2f}')} | {i['procs']} | {fmt(i['per_conn_kb'], '{:.0f}')} |")
            L.append("")
        return L

    def tls_tables(self):
        if "tls" not in self.extras or not self.tls:
            return []
        L = []
        ms = lambda x: fmt(x * 1000 if x is not None else None, "{:.2f}")  # noqa: E731
        label = {t.key: t.label for t in self.tls_targets}
        key0 = TLS_KEY_LABELS[self.tls_keys[0]]
        if self.tls_hs:
            L.append(f"## TLS handshakes (smtpload.py handshake: {self.tls_handshakes} sequential handshakes per row, "
                     f"a new connection each, no session resumption; Python {sys.version.split()[0]} ssl, "
                     f"{smtpload.ssl.OPENSSL_VERSION}, verifying the chain)")
            L.append("")
            L.append("| server | key | TLS | measured | n | p50 ms | p90 ms | p99 ms | max ms "
                     "| server CPU ms/conn | client CPU ms/conn | cipher |")
            L.append("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
            for h in self.tls_hs:
                xs = h["samples"]
                n = max(1, h["ok"] + h["failed"])
                what = ("STARTTLS written -> handshake done" if h["mode"] == "starttls"
                        else "implicit TLS: connect -> handshake done")
                ciphers = ", ".join(f"{v} {c}" for c, v in h.get("ciphers", {}).items()) or "-"
                vers = set(h.get("versions", {}))
                tls = h["version"] + ("" if vers <= {f"TLSv{h['version']}"} else f" (got {', '.join(sorted(vers))})")
                L.append("| " + " | ".join([
                    short_label(label.get(h["server"], h["server"])), TLS_KEY_LABELS[h["kind"]], tls, what,
                    str(len(xs)), ms(percentile(xs, 50)), ms(percentile(xs, 90)), ms(percentile(xs, 99)),
                    ms(max(xs) if xs else None), ms(h["server_cpu_s"] / n),
                    ms(h["client_cpu_s"] / n if h["client_cpu_s"] is not None else None), ciphers,
                ]) + " |")
            L.append("")
            bad = [h for h in self.tls_hs if h["failed"]]
            if bad:
                L.append("(failed handshakes: " + "; ".join(
                    f"{h['server']} {h['kind']} {h['version']} {h['mode']}: {h['failed']} {h['errors'][:2]}"
                    for h in bad) + ")")
                L.append("")
        runs = [r for r in self.runs if r["what"].startswith("tls-")]
        if runs:
            n = self.tls_messages
            L.append(f"## TLS: {self.sessions} sessions, one message per connection (smtpload.py send --procs "
                     f"{self.tls_clients}: {n} messages of {self.size} bytes, {self.rounds} rounds; {key0}, "
                     f"TLS as negotiated)")
            L.append("")
            L.append("| server | mode | accepted msg/s | vs plain | end-to-end msg/s | vs plain | CPU s/1000 msg "
                     "| vs plain | peak PSS MiB | client CPU s/1000 msg | cores busy: server, client |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            names = {"plain": "plaintext", "starttls": "STARTTLS", "starttls-auth": "STARTTLS + AUTH PLAIN",
                     "implicit": "implicit TLS"}
            for t in self.tls_targets:
                fields = ("accepted", "e2e", "cpu_s", "pss_kb", "client_cpu_s", "server_cores", "client_cores")
                base = {f: self.agg(t.key, "tls-plain", f) for f in fields}
                for mode in names:
                    if not any(r["server"] == t.key and r["what"] == f"tls-{mode}" for r in runs):
                        continue
                    v = {f: self.agg(t.key, f"tls-{mode}", f) for f in fields}
                    rel = lambda f: "" if mode == "plain" else fmt(ratio(v[f], base[f]), "{:.2f}")  # noqa: E731
                    L.append("| " + " | ".join([
                        short_label(t.label), names[mode],
                        fmt(v["accepted"], "{:.0f}"), rel("accepted"),
                        fmt(v["e2e"], "{:.0f}"), rel("e2e"),
                        fmt(v["cpu_s"] * 1000 / n if v["cpu_s"] is not None else None, "{:.2f}"), rel("cpu_s"),
                        fmt(v["pss_kb"] / 1024 if v["pss_kb"] is not None else None, "{:.1f}"),
                        fmt(v["client_cpu_s"] * 1000 / n if v["client_cpu_s"] is not None else None, "{:.2f}"),
                        f"{fmt(v['server_cores'], '{:.2f}')}, {fmt(v['client_cores'], '{:.2f}')}",
                    ]) + " |")
            L.append("")
            L.append(f"(cores busy = CPU seconds / seconds of the run, medians: the server's until its queue was "
                     f"empty, the client's {self.tls_clients} processes' until they exited; this machine has "
                     f"{len(os.sched_getaffinity(0))} usable.)")
            L.append("")
        if self.tls_idle:
            L.append(f"## TLS: memory of idle connections (greeted, EHLO; STARTTLS: then STARTTLS and EHLO "
                     f"again; {key0}; detad: a fresh server per set; Postfix: one set after the other)")
            L.append("")
            L.append("| server | connections | kind | PSS before MiB | PSS with them MiB | processes "
                     "| KiB per connection |")
            L.append("|---|---:|---|---:|---:|---:|---:|")
            kinds = {"none": "plaintext", "starttls": "STARTTLS", "implicit": "implicit TLS"}
            for i in self.tls_idle:
                L.append(f"| {short_label(i['label'])} | {i['n']} | {kinds[i['mode']]} | "
                         f"{fmt(i['before_kb'] / 1024, '{:.2f}')} | {fmt(i['loaded_kb'] / 1024, '{:.2f}')} | "
                         f"{i['procs_before']} -> {i['procs']} | {fmt(i['per_conn_kb'], '{:.0f}')} |")
            L.append("")
            errs = [f"{i['server']} {i['mode']}: {i['errors']}" for i in self.tls_idle if i["errors"]]
            if errs:
                L.append("(errors opening idle connections: " + "; ".join(errs) + ")")
                L.append("")
        L.append("TLS notes: the certificates are throwaway ones made for this run (a P-256 CA; server keys "
                 f"{', '.join(TLS_KEY_LABELS[k] for k in self.tls_keys)}), detad (tls_cert, tls_key, listen_tls, "
                 "auth_users with one `openssl passwd -6` user: SHA512-CRYPT, 5000 rounds) relaying to an "
                 "smtp-sink like detad-relay; "
                 + ("Postfix: the private instance with two more smtpd listeners (smtpd_tls_security_level=may; "
                    "wrapper mode) and tlsmgr, no SASL (so no AUTH row). " if any(
                        not isinstance(t, Detad) for t in self.tls_targets) else "")
                 + "KiB per connection = the PSS the server's processes gained with the connections (new "
                 "processes whole, the others by their growth, processes that exited meanwhile left out) / "
                 "connections; the Postfix plaintext row is on its TLS-capable smtpd. A handshake row's server "
                 "CPU per connection includes the connection's greeting, EHLO(s) and QUIT; the client's is its "
                 "loop's process time. The load client is Python and pays for its own TLS (see its CPU column): "
                 "with 2 cores the server and the client share the machine.")
        L.append("")
        return L

    def round_table(self):
        L = ["Every run (accepted / end-to-end msg/s; CPU s of the server and of the load client; peak PSS):",
             "", "```"]
        for r in self.runs:
            acc = f"{r['accepted']:.0f}" if r["accepted"] else "FAIL"
            e2e = f"{r['e2e']:.0f}" if r["e2e"] else "-"
            L.append(f"round {r['round']} {r['what']:<15} {r['server']:<14} {acc:>6} / {e2e:>6}  "
                     f"cpu {r['cpu_s']:.2f}  client cpu {r['client_cpu_s']:.2f}  pss {r['pss_kb'] / 1024:.1f}M" + (f"  {r['error']}" if r.get("error") else ""))
        L.append("```")
        return L

    def save_raw(self, path):
        with open(path, "w") as f:
            cols = ["round", "what", "server", "n", "rc", "ok", "accept_s", "e2e_s", "accepted", "e2e", "cpu_s",
                    "io", "cgio", "dev", "pss_kb", "pss_procs", "samples", "delivered"]
            f.write("\t".join(cols) + "\n")
            for r in self.runs:
                f.write("\t".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + "\n")

    # ------------------------------------------------------------------ cleanup
    def cleanup(self):
        for s in self.extra_servers + list(reversed(self.servers)):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.key}: {e}")
        left = []
        for pid, st, etc in self.postfix_masters:
            if procstat.alive(pid, st):
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        left += leftover_postfix([etc for _p, _s, etc in self.postfix_masters])
        if left:
            log(f"WARNING: Postfix process(es) {left} of this run survived `postfix stop`/abort and were killed")
            self.notes.append(f"Postfix processes {left} had to be killed after `postfix stop`")
        elif self.postfix_masters:
            log("no Postfix process of this run is left (master gone, none with our MAIL_CONFIG)")
        if self.cg:
            self.cg.remove()
        if self.keep or self.failed:
            log(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def leftover_postfix(etc_dirs):
    """Kill (by pid) any process still running with MAIL_CONFIG=<one of our
    config directories>: a Postfix process of this run. Returns their pids."""
    want = {f"MAIL_CONFIG={d}".encode() for d in etc_dirs}
    if not want:
        return []
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = set(f.read().split(b"\0"))
        except OSError:
            continue
        if env & want and procstat.alive(int(d)):
            found.append(int(d))
            try:
                os.kill(int(d), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return found


def traced(pid):
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("TracerPid:") and line.split()[1] == "0":
                        return False
    except OSError:
        return True  # gone: nothing to wait for
    return True


def parse_strace_c(path, names):
    by = {}
    try:
        text = open(path).read()
    except OSError:
        return by
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in names and parts[0].replace(".", "").isdigit():
            by[parts[-1]] = by.get(parts[-1], 0) + int(parts[3])
    return by


def short_label(label):
    """`detad` of `detad, relay to ...`, `Postfix` of `Postfix (private, ...)`."""
    return label.split(" (")[0].split(",")[0]


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, f):
    return "n/a" if v is None else f.format(v)


def main(argv):
    h = Harness(argv)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    log(f"{h.rounds} rounds x {h.messages} messages of {h.size} bytes, {h.sessions} sessions; "
        f"profiles {' '.join(h.profiles)}; servers {' '.join(h.server_keys)}; extras {' '.join(h.extras) or '-'}")
    log(f"work directory {h.work}; CPU accounting: {'cgroup v2 ' + h.cg.path if h.cg else 'process tree'}")
    interrupted = False
    try:
        h.make_servers()
        h.phase_idle()
        h.phase_rounds()
        h.phase_rdlv()
        h.phase_tls()
        h.phase_deta()
        h.phase_count()
    except KeyboardInterrupt as e:
        interrupted = True
        h.failed = True
        h.notes.append(f"INTERRUPTED ({e}): partial results")
        log(f"interrupted: {e}")
    except Exception as e:
        h.failed = True
        h.notes.append(f"ABORTED: {e}")
        log(f"error: {e}")
    finally:
        h.cleanup()
    text = h.report()
    out = h.out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    h.save_raw(os.path.splitext(out)[0] + ".tsv")
    print(text)
    log(f"report saved to {out} (every run: {os.path.splitext(out)[0]}.tsv)")
    if interrupted:
        return 130
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
