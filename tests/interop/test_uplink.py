"""Suite: the authenticated, encrypted uplink against a real TLS+AUTH server,
Python's aiosmtpd (run in this process, on 127.0.0.1), with certificates
from a throwaway CA made here with openssl (no key is ever committed).

Every upstream sits behind a Tap: a TCP forwarder that records every byte
detad sends, as tcpdump would (there is no tcpdump here). Together with
what aiosmtpd logs (its authenticator, each message) this proves where the
credentials went, and that they never travelled in clear.

  upstream   aiosmtpd                                        routes to it
  starttls   STARTTLS required, AUTH required (only over TLS)   tls.test
  smtps      implicit TLS (RFC 8314), AUTH required             smtps.test
  plain      no STARTTLS at all, offers AUTH in plaintext (a trap) plain.test

  detad      relay_tls       relay_ca      relay_auth   checks
  good       require         test CA       right        tls.test + smtps.test arrive byte-exact,
                                                        authenticated as the file's user;
                                                        plain.test deferred 4.7.4, no AUTH sent
  opport     opportunistic   test CA       right        plain.test deferred 4.7.10, no AUTH sent
  wrongca    require         another CA    right        tls.test deferred 4.7.5, the log names
                                                        the verification error (UnknownIssuer)
  badpw      require         test CA       wrong pw     tls.test: 535 -> `failed` DSN (5.7.8)

Then, over every byte every Tap recorded: the password, in clear or in any
of the base64 forms AUTH PLAIN or LOGIN would carry it, never appears; each
STARTTLS session has only EHLO and STARTTLS in clear, then TLS records.
"""

import base64
import logging
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings

from common import (BODY, Detad, Results, args, dsn_actions, headers, read, wait_for, wait_maildir)

A = args()
R = Results("uplink")
DSN_MD = os.path.join(A.dsn_root, "uplink")
USER = "relay-user"
PASSWORD = "Pa55:w0rd-uplink"
WRONG = "not-the-password"

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError as e:  # run.sh checks first; this is for a bare run
    R.fail("aiosmtpd importable", f"{e} (sh tests/interop/install-deps.sh, then run with "
                                  f"/opt/detad-interop/venv/bin/python3); python {sys.executable}")
    sys.exit(R.finish())


# aiosmtpd logs each refused handshake with a traceback, and warns about the
# plaintext trap it is asked to be: expected here, so kept out of the output.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", module="aiosmtpd")

# --- the PKI -------------------------------------------------------------------
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = detad interop
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_pki(d):
    """ca.pem, other-ca.pem, and server.pem/server.key issued by ca.pem."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "openssl.cnf"), "w") as f:
        f.write(OPENSSL_CNF)

    def openssl(*argv):
        r = subprocess.run(["openssl", *argv], cwd=d, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(argv)}: {r.stderr.strip()}")

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=detad interop {ca}")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key")
    openssl("req", "-new", "-config", "openssl.cnf", "-key", "server.key", "-out", "server.csr")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
            "-days", "2", "-extfile", "openssl.cnf", "-extensions", "leaf", "-out", "server.pem")
    return {name: os.path.join(d, name) for name in ("ca.pem", "other-ca.pem", "server.pem", "server.key")}


def secret_file(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# --- the Tap: what went over the wire ------------------------------------------
class Tap:
    """127.0.0.1:port -> 127.0.0.1:target, recording what the client sends,
    one bytearray per connection."""

    def __init__(self, target):
        self.target = target
        self.sessions = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            captured = bytearray()
            with self.lock:
                self.sessions.append(captured)
            threading.Thread(target=self._pump, args=(client, upstream, captured), daemon=True).start()

    @staticmethod
    def _pump(client, upstream, captured):
        peers = {client: upstream, upstream: client}
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        captured.extend(data)
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def captured(self):
        with self.lock:
            return [bytes(s) for s in self.sessions]

    def stop(self):
        self.closed = True
        self.sock.close()


# --- the upstreams ---------------------------------------------------------------
class Upstream:
    """aiosmtpd on 127.0.0.1 with an authenticator that knows USER/PASSWORD;
    logs every AUTH attempt and every message. `tls`: None, "starttls" or
    "smtps"."""

    def __init__(self, name, pki, tls):
        self.name = name
        self.auth_log = []  # (mechanism, login, success, over_tls)
        self.messages = []  # dicts
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pki["server.pem"], pki["server.key"])
        kw = dict(hostname="127.0.0.1", port=0, server_hostname=f"{name}.upstream.test",
                  authenticator=self._authenticate, auth_required=True)
        if tls == "starttls":
            kw.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        elif tls == "smtps":
            # aiosmtpd 1.4 counts only STARTTLS as TLS for auth_require_tls;
            # an implicit-TLS session is TLS from its first byte anyway.
            kw.update(ssl_context=ctx, auth_require_tls=False)
        else:
            kw.update(auth_require_tls=False)  # the trap: AUTH offered in clear
        self.port = free_port()
        kw["port"] = self.port
        self.controller = Controller(self, **kw)
        self.tap = None

    def start(self):
        self.controller.start()
        self.tap = Tap(self.port)
        return self

    def stop(self):
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001
            pass
        if self.tap:
            self.tap.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        over_tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else None
        self.auth_log.append((mechanism, login, ok, over_tls))
        if ok:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({
            "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
            "content": envelope.original_content, "user": session.auth_data if session.authenticated else None,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
        })
        return "250 2.0.0 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- helpers ---------------------------------------------------------------------
def send(port, sender, rcpt, content):
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        s.sendmail(sender, [rcpt], content)


def recipient_state(daemon, address):
    for m in daemon.queue():
        for r in m["recipients"]:
            if r["address"] == address:
                return r
    return None


def check_deferred(name, daemon, address, status):
    """`address` deferred in daemon's queue with a diagnostic starting
    with `status`."""
    last = {}

    def ok():
        last["r"] = recipient_state(daemon, address)
        r = last["r"]
        return r is not None and r["state"] == "deferred" and r.get("status") == status
    got = wait_for(ok, 15, 0.3)
    r = last.get("r") or {}
    R.check(name, got, f"recipient {r}\n{daemon.log_tail(4)}", r.get("diagnostic", ""))


def exact(name, upstream, subject, sent):
    """The message with `subject` arrived as detad's Received header + `sent`."""
    msg = wait_for(lambda: next((m for m in upstream.messages if f"Subject: {subject}\r\n".encode() in m["content"]),
                                None), 15)
    if not msg:
        R.fail(name, f"nothing with Subject {subject!r} reached the {upstream.name} upstream")
        return None
    got = msg["content"]
    if not got.endswith(sent):
        R.fail(name, f"content differs: sent ends {sent[-120:]!r}, got ends {got[-120:]!r}")
        return msg
    prefix = got[: len(got) - len(sent)].decode(errors="replace")
    extra = [l for l in prefix.split("\r\n") if l and not (l.startswith("Received:") or l[:1] in " \t")]
    R.check(name, not extra, f"lines added before the content besides Received: {extra}", f"{len(sent)} octets")
    return msg


def secrets():
    """Every form the password could take on the wire."""
    forms = {PASSWORD.encode(), base64.b64encode(PASSWORD.encode()),
             base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
             base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode())}
    return forms


# --- the run ---------------------------------------------------------------------
pki = make_pki(os.path.join(A.work, "pki"))
good = secret_file(os.path.join(A.work, "good.auth"), f"{USER}:{PASSWORD}\n")
bad = secret_file(os.path.join(A.work, "bad.auth"), f"{USER}:{WRONG}\n")
open_file = secret_file(os.path.join(A.work, "open.auth"), f"{USER}:{PASSWORD}\n", 0o644)

ups = {k: Upstream(k, pki, t) for k, t in (("starttls", "starttls"), ("smtps", "smtps"), ("plain", None))}
for u in ups.values():
    u.start()


def detad(name, extra, routes):
    return Detad(A.bin, A.work, name, routes + [f"sender.test maildir:{DSN_MD}"], extra=extra)


tls_route = f"tls.test smtp:127.0.0.1:{ups['starttls'].tap.port}"
d_good = detad("detad-good", {"relay_tls": "require", "relay_ca": pki["ca.pem"], "relay_auth": good}, [
    tls_route, f"smtps.test smtps:127.0.0.1:{ups['smtps'].tap.port}",
    f"plain.test smtp:127.0.0.1:{ups['plain'].tap.port}"])
d_opport = detad("detad-opport", {"relay_tls": "opportunistic", "relay_ca": pki["ca.pem"], "relay_auth": good},
                 [f"plain.test smtp:127.0.0.1:{ups['plain'].tap.port}"])
d_wrongca = detad("detad-wrongca", {"relay_tls": "require", "relay_ca": pki["other-ca.pem"], "relay_auth": good},
                  [tls_route])
d_badpw = detad("detad-badpw", {"relay_tls": "require", "relay_ca": pki["ca.pem"], "relay_auth": bad}, [tls_route])
daemons = [d_good, d_opport, d_wrongca, d_badpw]


class _Stopper:
    def stop(self):
        for u in ups.values():
            u.stop()


with R.suite_body(daemons, [_Stopper()]):
    # A credentials file others can read is refused before anything starts.
    d_open = detad("detad-open", {"relay_auth": open_file}, [tls_route])
    rc, out, err = d_open.cli("-t")
    R.check("relay_auth readable by everyone: `detad -t` refuses it, saying chmod 600",
            rc != 0 and "chmod 600" in err and PASSWORD not in err + out, f"exit {rc}: {err.strip()}",
            err.strip()[-90:])
    rc, out, err = d_good.cli("-t")
    R.check("`detad -t` shows the uplink keys, not the password",
            rc == 0 and "relay_tls = require" in out and f"relay_auth = {good}" in out and PASSWORD not in out,
            f"exit {rc}: {err.strip()}\n{out}")
    for d in daemons:
        d.start()
    R.ok("aiosmtpd upstreams (STARTTLS, smtps, plaintext) behind taps, and 4 detads start",
         ", ".join(f"{k}:{u.port} tap {u.tap.port}" for k, u in ups.items()))

    with R.guard("starttls + AUTH", d_good):
        sent = (headers("s-good@sender.test", "a@tls.test", "uplink starttls") + BODY).encode()
        send(d_good.port, "s-good@sender.test", "a@tls.test", sent)
        msg = exact("STARTTLS upstream: message arrives byte-exact", ups["starttls"], "uplink starttls", sent)
        if msg:
            R.check("STARTTLS upstream: authenticated as the relay_auth user, over TLS",
                    msg["user"] == USER and msg["tls"], f"user {msg['user']!r}, tls {msg['tls']}", USER)

    with R.guard("smtps + AUTH", d_good):
        sent = (headers("s-good@sender.test", "b@smtps.test", "uplink smtps") + BODY).encode()
        send(d_good.port, "s-good@sender.test", "b@smtps.test", sent)
        msg = exact("smtps: upstream (implicit TLS): message arrives byte-exact", ups["smtps"], "uplink smtps", sent)
        if msg:
            R.check("smtps: upstream: authenticated as the relay_auth user, over TLS",
                    msg["user"] == USER and msg["tls"], f"user {msg['user']!r}, tls {msg['tls']}", USER)

    with R.guard("no STARTTLS, require", d_good):
        sent = (headers("s-good@sender.test", "c@plain.test", "uplink plain require") + BODY).encode()
        send(d_good.port, "s-good@sender.test", "c@plain.test", sent)
        check_deferred("no STARTTLS offered, relay_tls = require: deferred 4.7.4", d_good, "c@plain.test", "4.7.4")

    with R.guard("no STARTTLS, opportunistic", d_opport):
        sent = (headers("s-opp@sender.test", "d@plain.test", "uplink plain opportunistic") + BODY).encode()
        send(d_opport.port, "s-opp@sender.test", "d@plain.test", sent)
        check_deferred("no STARTTLS, AUTH offered in clear, relay_tls = opportunistic: deferred 4.7.10",
                       d_opport, "d@plain.test", "4.7.10")
        R.check("plaintext upstream: no message and no AUTH ever reached it",
                not ups["plain"].messages and not ups["plain"].auth_log,
                f"messages {len(ups['plain'].messages)}, AUTH attempts {ups['plain'].auth_log}")

    with R.guard("wrong CA", d_wrongca):
        sent = (headers("s-ca@sender.test", "e@tls.test", "uplink wrong ca") + BODY).encode()
        send(d_wrongca.port, "s-ca@sender.test", "e@tls.test", sent)
        check_deferred("certificate from another CA, relay_tls = require: deferred 4.7.5",
                       d_wrongca, "e@tls.test", "4.7.5")
        logged = wait_for(lambda: any("WARN" in l and "UnknownIssuer" in l for l in d_wrongca.log_text().splitlines()),
                          10)
        line = next((l for l in d_wrongca.log_text().splitlines() if "UnknownIssuer" in l), "")
        R.check("wrong CA: a warn log line names the verification error", logged, d_wrongca.log_tail(), line[-110:])

    with R.guard("wrong password", d_badpw):
        sent = (headers("s-badpw@sender.test", "f@tls.test", "uplink wrong password") + BODY).encode()
        send(d_badpw.port, "s-badpw@sender.test", "f@tls.test", sent)
        files = wait_maildir(DSN_MD, "s-badpw", timeout=15)
        acts = [a for f in files for a in (dsn_actions(read(f, "rb")) or [])]
        R.check("wrong password: 535 -> `failed` DSN with 5.7.8", ("f@tls.test", "failed", "5.7.8") in acts,
                f"DSN groups {acts}\n{d_badpw.log_tail()}", f"{acts}")
        R.check("wrong password: the upstream saw one failed AUTH over TLS, no message",
                any(l[1] == USER and not l[2] and l[3] for l in ups["starttls"].auth_log)
                and not any(b"uplink wrong password" in m["content"] for m in ups["starttls"].messages),
                f"AUTH log {ups['starttls'].auth_log}")

    # --- the wire -------------------------------------------------------------
    time.sleep(0.5)
    leaks = [(k, i) for k, u in ups.items() for i, s in enumerate(u.tap.captured())
             if any(form in s for form in secrets())]
    total = sum(len(u.tap.captured()) for u in ups.values())
    R.check("the password never travelled in clear (every byte detad sent, all upstreams)",
            total > 0 and not leaks, f"found in {leaks}", f"{total} sessions recorded")
    plain_auth = [s for s in ups["plain"].tap.captured() if b"AUTH" in s.upper()]
    R.check("plaintext upstream: no AUTH command ever sent to it", not plain_auth,
            f"{plain_auth[:1]}", f"{len(ups['plain'].tap.captured())} sessions")
    starttls = ups["starttls"].tap.captured()
    clear_ok = [s for s in starttls
                if s.startswith(b"EHLO gw.test\r\nSTARTTLS\r\n") and s[len(b"EHLO gw.test\r\nSTARTTLS\r\n"):][:1] == b"\x16"]
    R.check("STARTTLS upstream: only EHLO and STARTTLS in clear, then TLS records",
            starttls and len(clear_ok) == len(starttls),
            f"{[s[:40] for s in starttls if s not in clear_ok]}", f"{len(starttls)} sessions")
    smtps = ups["smtps"].tap.captured()
    R.check("smtps: upstream: TLS from the first byte", smtps and all(s[:1] == b"\x16" for s in smtps),
            f"{[s[:16] for s in smtps]}", f"{len(smtps)} sessions")

sys.exit(R.finish())
