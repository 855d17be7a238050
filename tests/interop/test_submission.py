"""Suite: submission -- detad as the server of authenticated, encrypted
submission, against real clients: swaks (STARTTLS and implicit TLS, AUTH
PLAIN and LOGIN), Python's smtplib and ssl, `openssl s_client`, curl.

Certificates come from a throwaway CA made here with openssl, the
passwd-file from `openssl passwd -6` (no key or hash is ever committed).
relay_networks = 192.0.2.0/24, so loopback may NOT relay: only an
authenticated client gets its recipients accepted.

  detad           listen + listen_tls, tls_cert/tls_key, auth_users,
  "detad-tls"     auth_plaintext = no (default); RUST_LOG=trace
  detad           listen only, tls_cert/tls_key, auth_users,
  "detad-loop"    auth_plaintext = loopback, auth_required = yes; RUST_LOG=trace

Checks: delivery through each client with the Maildir body byte-exact and
the Received protocol keyword (RFC 3848: ESMTPSA / ESMTPA) plus the TLS
line; what EHLO offers before and after STARTTLS; TLS 1.3 and 1.2 offered,
1.1 refused; certificate verification against the CA; 554 5.7.1 for an
unauthenticated RCPT; 535 5.7.8 with a growing delay; 538 5.7.11 in
plaintext; 501 for bad base64 and `*`; the STARTTLS command injection
(CVE-2011-0411 class); 530 5.7.0 under auth_required; the certificate
reloaded on SIGHUP (and a broken key refused, the old certificate kept);
no password, in clear or base64, in any log.
"""

import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage

from common import (BODY, Detad, Results, args, body_of, crlf_to_lf, dot_stuff, free_port, headers,
                    maildir_files, read, wait_for, wait_maildir, wait_port)

A = args()
R = Results("submission")
MD = os.path.join(A.work, "maildir")
DSN_MD = os.path.join(A.dsn_root, "submission")

# alice's entry is written {SHA512-CRYPT}$6$..., bob's as the bare $6$ hash
# `openssl passwd -6` prints: both forms of the Dovecot passwd-file.
USERS = {"alice": "Secr3t-subm1ssion", "bob": "b0b:Passw0rd/x"}
PASSWORD = USERS["alice"]
WRONG = "Wr0ng-guess-alice"
SENDER = "alice@client.test"


# --- the PKI ---------------------------------------------------------------------
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = gw.test
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:gw.test,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def run(argv, timeout=30, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def make_pki(d):
    """ca.pem; server.pem/server.key (CN gw.test, EC P-256, PKCS#8) and
    server2.pem/server2.key (CN gw2.test, RSA 2048, PKCS#1), both for
    gw.test and 127.0.0.1, both issued by ca.pem."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "openssl.cnf"), "w") as f:
        f.write(OPENSSL_CNF)

    def openssl(*argv):
        r = run(["openssl", *argv], cwd=d, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(argv)}: {r.stderr.strip()}")

    openssl("req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=detad submission test CA")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "server.key")
    openssl("genrsa", "-traditional", "-out", "server2.key", "2048")
    for n, (key, cn) in enumerate((("server.key", "gw.test"), ("server2.key", "gw2.test")), start=2):
        stem = key[:-4]
        openssl("req", "-new", "-config", "openssl.cnf", "-key", key, "-subj", f"/CN={cn}", "-out", f"{stem}.csr")
        openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(n),
                "-days", "2", "-extfile", "openssl.cnf", "-extensions", "leaf", "-out", f"{stem}.pem")
    for key in ("ca.key", "server.key", "server2.key"):
        os.chmod(os.path.join(d, key), 0o600)
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "server2.pem", "server2.key")}


def make_users(path):
    lines = []
    for user, pw in USERS.items():
        r = run(["openssl", "passwd", "-6", "-stdin"], input=pw + "\n")
        h = r.stdout.strip()
        if r.returncode != 0 or not h.startswith("$6$"):
            raise RuntimeError(f"openssl passwd -6: exit {r.returncode}: {r.stderr.strip()} {h!r}")
        lines.append(f"{user}:{{SHA512-CRYPT}}{h}" if user == "alice" else f"{user}:{h}::::")
    with open(path, "w") as f:
        f.write("# made by test_submission.py with openssl passwd -6\n" + "\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


# --- a raw SMTP client -------------------------------------------------------------
class Client:
    """A socket speaking SMTP line by line; replies as (code, text) with the
    lines of a multi-line reply joined by ' | '."""

    def __init__(self, port, implicit=None, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit is not None:
            self.sock = implicit.wrap_socket(self.sock, server_hostname="gw.test")
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"connection closed; reply so far {lines}, pending {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return int(text[:3]), " | ".join(l[4:] for l in lines)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self, ctx):
        """STARTTLS; returns (reply, octets received after the 220 before
        the handshake)."""
        rep = self.cmd("STARTTLS")
        if rep[0] != 220:
            return rep, b""
        early, self.buf = self.buf, b""
        self.sock = ctx.wrap_socket(self.sock, server_hostname="gw.test")
        return rep, early

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ehlo_keywords(text):
    """The extension keywords of an EHLO reply text (as Client.reply joins it)."""
    return [l.split()[0].upper() for l in text.split(" | ")[1:] if l.split()]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, pw):
    return b64(f"\0{user}\0{pw}")


def tls_session(port, ctx, helo="raw.client.test"):
    """A Client after greeting, EHLO, STARTTLS and the second EHLO."""
    c = Client(port)
    code, text = c.reply()
    if code != 220:
        raise RuntimeError(f"greeting {code} {text}")
    code, text = c.cmd(f"EHLO {helo}")
    if code != 250:
        raise RuntimeError(f"EHLO {code} {text}")
    (code, text), _ = c.starttls(ctx)
    if code != 220:
        raise RuntimeError(f"STARTTLS {code} {text}")
    code, text = c.cmd(f"EHLO {helo}")
    if code != 250:
        raise RuntimeError(f"EHLO after STARTTLS {code} {text}")
    return c


# --- delivery checks ---------------------------------------------------------------
def received_of(raw):
    """detad's Received field (unfolded lines) of a delivered message."""
    text = crlf_to_lf(raw.decode("utf-8", "replace")).split("\n\n", 1)[0]
    out = []
    for line in text.split("\n"):
        if out and line[:1] in (" ", "\t"):
            out.append(line.strip())
        elif out:
            break
        elif line.startswith("Received:"):
            out.append(line)
    return " ".join(out)


def expect_delivered(name, user, proto="ESMTPSA", tls=True, daemon=None, timeout=10.0, sent=None):
    """Exactly one message in MD/user/new, its body == BODY (and, with
    `sent`, the whole file == detad's Return-Path/Delivered-To/Received
    lines + `sent`, LF line ends as in the Maildir); its Received field says
    `with PROTO` and carries the TLS line iff `tls`."""
    wait_maildir(MD, user, 1, timeout)
    time.sleep(0.2)
    files = maildir_files(MD, user)
    if len(files) != 1:
        R.fail(f"{name}: delivered, body byte-exact",
               f"expected 1 file in {MD}/{user}/new, found {len(files)}" + (f"\n{daemon.log_tail()}" if daemon else ""))
        return None
    raw = read(files[0], "rb")
    got, want = body_of(raw), crlf_to_lf(BODY)
    why = f"body differs in {files[0]}:\n  want {want!r}\n  got  {got!r}" if got != want else ""
    if sent is not None and not why:
        text, want_all = crlf_to_lf(raw.decode("utf-8", "replace")), crlf_to_lf(sent)
        added = text[:-len(want_all)].split("\n") if text.endswith(want_all) else None
        if added is None:
            why = f"message differs from what was sent in {files[0]}:\n  sent {want_all!r}\n  got  {text!r}"
        elif any(l and not l.startswith(("Return-Path:", "Delivered-To:", "Received:", "\t")) for l in added):
            why = f"lines added besides Return-Path, Delivered-To, Received: {added}"
    R.check(f"{name}: delivered, " + ("message byte-exact after detad's trace lines" if sent else "body byte-exact"),
            not why, why, os.path.basename(files[0]))
    rec = received_of(raw)
    tls_m = re.search(r"\(version=(TLSv1\.[23]) cipher=([A-Z0-9_]+)\)", rec)
    ok = f" with {proto} id " in rec and (bool(tls_m) == tls)
    what = " and names the TLS version and cipher" if tls else ", no TLS line"
    R.check(f"{name}: Received says with {proto}{what}", ok, f"Received: {rec!r}",
            proto + (f", {tls_m.group(1)} {tls_m.group(2)}" if tls_m else ""))
    return raw


def nothing_delivered(user, wait=1.5):
    time.sleep(wait)
    return not maildir_files(MD, user) and not os.path.exists(os.path.join(MD, user))


def s_client(port, *opts, starttls=True):
    """`openssl s_client -brief` against 127.0.0.1:port, verifying against the
    CA; returns (exit code, protocol, peer subject, output)."""
    argv = ["openssl", "s_client", "-brief", "-connect", f"127.0.0.1:{port}", "-servername", "gw.test",
            "-CAfile", PKI["ca.pem"], "-verify_return_error"]
    if starttls:
        argv += ["-starttls", "smtp"]
    r = run(argv + list(opts), timeout=20, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    proto = re.search(r"^Protocol version: (\S+)", out, re.M)
    peer = re.search(r"^Peer certificate: (.*)$", out, re.M)
    ok = "CONNECTION ESTABLISHED" in out and "Verification: OK" in out
    return r.returncode, (proto.group(1) if proto and ok else None), (peer.group(1).strip() if peer else None), out


def start_traced(d, level="trace"):
    old = os.environ.get("RUST_LOG")
    os.environ["RUST_LOG"] = level
    try:
        d.start()
    finally:
        if old is None:
            os.environ.pop("RUST_LOG", None)
        else:
            os.environ["RUST_LOG"] = old


def secret_forms():
    """Every form a password could take in a log: in clear, and the base64 of
    any stream it is part of (each of the three alignments, the characters
    that depend on the password alone), plus the whole PLAIN responses."""
    forms = set()
    for user, pw in list(USERS.items()) + [("alice", WRONG)]:
        p = pw.encode()
        forms.add(p)
        for k in range(3):
            enc = base64.b64encode(b"\0" * k + p)
            first, last = -(-k // 3), (k + len(p)) // 3
            stable = enc[4 * first:4 * last]
            if len(stable) >= 8:
                forms.add(stable)
        forms.add(plain(user, pw).encode())
        forms.add(b64(f"{user}\0{user}\0{pw}").encode())
    return forms


def swaks(name, port, auth, tls_flag, rcpt, subject, user="alice"):
    """swaks with TLS verified against the CA and AUTH; returns the message
    sent (CRLF line ends)."""
    content = headers(SENDER, f"{rcpt}@remote.test", subject) + BODY
    msg = os.path.join(A.work, f"{rcpt}.eml")
    with open(msg, "w") as f:
        # No final newline: swaks ends the data with its own CRLF before the dot.
        f.write(crlf_to_lf(content).rstrip("\n"))
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", tls_flag, "--tls-verify", "--tls-ca-path", PKI["ca.pem"],
           "--auth-user", user, "--auth-password", USERS[user], "--to", f"{rcpt}@remote.test",
           "--from", SENDER, "--helo", "swaks.client.test", "--timeout", "20", "--data", "@" + msg]
    cmd[4:4] = ["--auth"] + ([auth] if auth else [])
    r = run(cmd, timeout=40)
    log = os.path.join(A.work, f"{rcpt}.swaks.log")
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    t = r.stdout
    tls_m = re.search(r"TLS started with cipher (\S+)", t)
    mech = re.search(r"~> AUTH (\S+)", t)
    ok = r.returncode == 0 and tls_m and mech and "<~  235 " in t
    R.check(f"{name}: TLS, AUTH 235, exit 0", ok,
            f"exit {r.returncode}, transcript {log}:\n{(r.stdout + r.stderr)[-1500:]}",
            f"{tls_m.group(1) if tls_m else '-'}, AUTH {mech.group(1) if mech else '-'}")
    return content


# --- the run -----------------------------------------------------------------------
PKI = make_pki(os.path.join(A.work, "pki"))
AUTH_FILE = make_users(os.path.join(A.work, "users.passwd"))
CTX = ssl.create_default_context(cafile=PKI["ca.pem"])

tls_dir = os.path.join(A.work, "detad-tls")
os.makedirs(tls_dir, exist_ok=True)
# The files the SIGHUP test overwrites: detad-tls's own copies.
CERT = os.path.join(tls_dir, "cert.pem")
KEY = os.path.join(tls_dir, "key.pem")
shutil.copyfile(PKI["server.pem"], CERT)
shutil.copyfile(PKI["server.key"], KEY)
os.chmod(KEY, 0o600)

routes = [f"remote.test maildir:{MD}", f"client.test maildir:{DSN_MD}"]
TLS_PORT = free_port()
d_tls = Detad(A.bin, A.work, "detad-tls", routes, extra={
    "listen_tls": f"127.0.0.1:{TLS_PORT}", "tls_cert": CERT, "tls_key": KEY, "auth_users": AUTH_FILE,
    "relay_networks": "192.0.2.0/24"})
d_loop = Detad(A.bin, A.work, "detad-loop", routes, extra={
    "tls_cert": PKI["server.pem"], "tls_key": PKI["server.key"], "auth_users": AUTH_FILE,
    "auth_plaintext": "loopback", "auth_required": "yes", "relay_networks": "192.0.2.0/24"})

with R.suite_body([d_tls, d_loop]):
    rc, out, err = d_tls.cli("-t")
    R.check("`detad -t` accepts the TLS and AUTH keys, shows no hash",
            rc == 0 and "$6$" not in out + err, f"exit {rc}: {err.strip()}\n{out}")
    start_traced(d_tls)
    if not wait_port(TLS_PORT, 10, d_tls.proc):
        raise RuntimeError(f"no listen_tls on 127.0.0.1:{TLS_PORT}\n{d_tls.log_tail()}")
    start_traced(d_loop)
    R.ok("two detads start (STARTTLS + listen_tls; loopback plaintext AUTH, auth_required)",
         f"tls {d_tls.port}+{TLS_PORT}, loop {d_loop.port}")

    # --- 1. Python smtplib: STARTTLS, then implicit TLS ---------------------------
    with R.guard("smtplib starttls + login", d_tls):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = SENDER, "py-starttls@remote.test", "smtplib starttls"
        m.set_content(crlf_to_lf(BODY))
        with smtplib.SMTP("127.0.0.1", d_tls.port, timeout=20) as s:
            s.ehlo("py.client.test")
            before = dict(s.esmtp_features)
            R.check("before STARTTLS: EHLO lists STARTTLS, not AUTH",
                    "starttls" in before and "auth" not in before, f"EHLO keywords {sorted(before)}")
            s.starttls(context=CTX)
            cert = s.sock.getpeercert()
            s.ehlo("py.client.test")
            after = dict(s.esmtp_features)
            mechs = after.get("auth", "").upper().split()
            R.check("after STARTTLS: the certificate verifies against the CA (127.0.0.1 in its SAN)",
                    cert and s.sock.version() in ("TLSv1.3", "TLSv1.2"), f"peer cert {cert}",
                    f"{s.sock.version()}, subject {dict(x[0] for x in cert['subject'])}")
            R.check("after STARTTLS: EHLO lists AUTH PLAIN LOGIN, no STARTTLS",
                    "starttls" not in after and {"PLAIN", "LOGIN"} <= set(mechs),
                    f"EHLO keywords {sorted(after)}, AUTH {mechs}", f"AUTH {' '.join(mechs)}")
            s.login("alice", PASSWORD)
            refused = s.send_message(m)
            R.check("smtplib starttls() + login() + send_message accepted", refused == {}, f"refused {refused}")
        expect_delivered("smtplib STARTTLS", "py-starttls", daemon=d_tls)

    with R.guard("smtplib SMTP_SSL + login", d_tls):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "bob@client.test", "py-smtps@remote.test", "smtplib smtps"
        m.set_content(crlf_to_lf(BODY))
        with smtplib.SMTP_SSL("127.0.0.1", TLS_PORT, timeout=20, context=CTX) as s:
            s.ehlo("py.client.test")
            feats = dict(s.esmtp_features)
            R.check("listen_tls: EHLO lists AUTH, not STARTTLS",
                    "auth" in feats and "starttls" not in feats, f"EHLO keywords {sorted(feats)}")
            s.login("bob", USERS["bob"])  # bob: the bare $6$ entry
            refused = s.send_message(m)
            R.check("smtplib SMTP_SSL + login() (bare $6$ entry) + send_message accepted",
                    refused == {}, f"refused {refused}", s.sock.version())
        expect_delivered("smtplib SMTP_SSL", "py-smtps", daemon=d_tls)

    with R.guard("SMTP_SSL without the CA", d_tls):
        err = None
        try:
            with smtplib.SMTP_SSL("127.0.0.1", TLS_PORT, timeout=20, context=ssl.create_default_context()) as s:
                s.noop()
        except ssl.SSLCertVerificationError as e:
            err = e
        R.check("listen_tls with the system CAs only: certificate verification fails", err is not None,
                "the handshake succeeded without the test CA", getattr(err, "verify_message", ""))

    # --- 2. swaks ----------------------------------------------------------------
    with R.guard("swaks --tls --auth PLAIN", d_tls):
        sent = swaks("swaks --tls --auth PLAIN", d_tls.port, "PLAIN", "--tls", "swaks-plain", "swaks tls plain")
        expect_delivered("swaks --tls --auth PLAIN", "swaks-plain", daemon=d_tls, sent=sent)
    with R.guard("swaks --tls --auth LOGIN", d_tls):
        sent = swaks("swaks --tls --auth LOGIN", d_tls.port, "LOGIN", "--tls", "swaks-login", "swaks tls login")
        expect_delivered("swaks --tls --auth LOGIN", "swaks-login", daemon=d_tls, sent=sent)
    with R.guard("swaks --tlsc --auth", d_tls):
        sent = swaks("swaks --tlsc --auth (listen_tls)", TLS_PORT, None, "--tlsc", "swaks-tlsc", "swaks tlsc")
        expect_delivered("swaks --tlsc --auth", "swaks-tlsc", daemon=d_tls, sent=sent)

    # --- 3. openssl s_client: the protocol versions ---------------------------------
    with R.guard("openssl s_client", d_tls):
        rc, proto, peer, out = s_client(d_tls.port)
        R.check("s_client -starttls smtp: TLS 1.3 negotiated, certificate verified", proto == "TLSv1.3",
                f"exit {rc}:\n{out[-800:]}", f"{proto}, {peer}")
        rc, proto, peer, out = s_client(d_tls.port, "-tls1_2")
        R.check("s_client -starttls smtp -tls1_2: TLS 1.2 negotiated, certificate verified", proto == "TLSv1.2",
                f"exit {rc}:\n{out[-800:]}", f"{proto}, {peer}")
        rc, proto, peer, out = s_client(TLS_PORT, starttls=False)
        R.check("s_client to listen_tls (implicit TLS): TLS 1.3, certificate verified", proto == "TLSv1.3",
                f"exit {rc}:\n{out[-800:]}", f"{proto}, {peer}")
        if "-tls1_1" in run(["openssl", "s_client", "-help"]).stderr:
            n_failed = d_tls.log_text().count("STARTTLS failed")
            # SECLEVEL=0: the client really offers TLS 1.1 (Debian's default
            # openssl.cnf would otherwise refuse it on the client side).
            rc, proto, peer, out = s_client(d_tls.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
            logged = wait_for(lambda: d_tls.log_text().count("STARTTLS failed") > n_failed, 5)
            line = [l for l in d_tls.log_text().splitlines() if "STARTTLS failed" in l][-1:] or [""]
            R.check("s_client -tls1_1: no connection; detad refuses the handshake and logs it",
                    rc != 0 and proto is None and "CONNECTION ESTABLISHED" not in out and logged,
                    f"exit {rc}, protocol {proto}, logged {bool(logged)}:\n{out[-600:]}",
                    line[0].split("failed:")[-1].strip()[-90:])
        else:
            R.note("this openssl has no -tls1_1: TLS 1.1 refusal not checked")

    # --- 4. curl ------------------------------------------------------------------
    for scheme, port, user in (("smtp", d_tls.port, "curl-starttls"), ("smtps", TLS_PORT, "curl-smtps")):
        name = f"curl {'--ssl-reqd ' if scheme == 'smtp' else ''}{scheme}://"
        with R.guard(name, d_tls):
            eml = os.path.join(A.work, f"{user}.eml")
            sent = headers(SENDER, f"{user}@remote.test", name) + BODY
            with open(eml, "wb") as f:
                f.write(sent.encode())
            cmd = ["curl", "-sS", "-v", "--max-time", "20", "--cacert", PKI["ca.pem"], "--user", f"alice:{PASSWORD}",
                   f"{scheme}://127.0.0.1:{port}/curl.client.test", "--mail-from", SENDER,
                   "--mail-rcpt", f"{user}@remote.test", "--upload-file", eml]
            if scheme == "smtp":
                cmd.insert(2, "--ssl-reqd")
            r = run(cmd, timeout=40)
            log = os.path.join(A.work, f"{user}.curl.log")
            with open(log, "w") as f:
                f.write(r.stdout + r.stderr)
            tls_ok = "SSL certificate verify ok" in r.stderr and (scheme == "smtps" or "> STARTTLS" in r.stderr)
            R.check(f"{name} --user alice:...: exit 0, certificate verified, 235",
                    r.returncode == 0 and tls_ok and "< 235 " in r.stderr,
                    f"exit {r.returncode}, see {log}:\n{r.stderr[-1200:]}")
            expect_delivered(name, user, daemon=d_tls, sent=sent)

    # --- 5. refusals ---------------------------------------------------------------
    with R.guard("no AUTH over TLS: relay denied", d_tls):
        with smtplib.SMTP("127.0.0.1", d_tls.port, timeout=20) as s:
            s.ehlo("py.client.test")
            s.starttls(context=CTX)
            s.ehlo("py.client.test")
            mail = s.mail(SENDER)
            rcpt = s.rcpt("noauth-tls@remote.test")
        R.check("TLS without AUTH from 127.0.0.1 (not in relay_networks): RCPT -> 554 5.7.1",
                mail[0] == 250 and rcpt[0] == 554 and rcpt[1].startswith(b"5.7.1"), f"MAIL {mail}, RCPT {rcpt}",
                rcpt[1].decode(errors="replace"))
        R.check("TLS without AUTH: nothing delivered", nothing_delivered("noauth-tls"),
                f"files in {MD}/noauth-tls")

    with R.guard("AUTH in plaintext", d_tls):
        with Client(d_tls.port) as c:
            c.reply()
            c.cmd("EHLO raw.client.test")
            auth = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            login = c.cmd("AUTH LOGIN")
            mail = c.cmd(f"MAIL FROM:<{SENDER}>")
            rcpt = c.cmd("RCPT TO:<noauth-plain@remote.test>")
            c.cmd("QUIT")
        R.check("AUTH PLAIN without TLS (auth_plaintext = no) -> 538 5.7.11",
                auth[0] == 538 and auth[1].startswith("5.7.11"), f"reply {auth}", auth[1])
        R.check("AUTH LOGIN without TLS -> 538 5.7.11", login[0] == 538 and login[1].startswith("5.7.11"),
                f"reply {login}")
        R.check("plaintext without AUTH: RCPT -> 554 5.7.1, nothing delivered",
                mail[0] == 250 and rcpt[0] == 554 and rcpt[1].startswith("5.7.1") and nothing_delivered("noauth-plain"),
                f"MAIL {mail}, RCPT {rcpt}")

    with R.guard("AUTH exchange edge cases over TLS", d_tls):
        with tls_session(d_tls.port, CTX) as c:
            bad64 = c.cmd("AUTH PLAIN AGFsaWNl!!!")
            c.cmd("AUTH LOGIN")
            c.cmd(b64("alice"))
            bad64_login = c.cmd("not*base64")
            c.cmd("AUTH LOGIN")
            cancel = c.cmd("*")
            c.cmd("AUTH PLAIN")
            cancel2 = c.cmd("*")
            good = c.cmd("AUTH LOGIN")
            good2 = c.cmd(b64("alice"))
            good3 = c.cmd(b64(PASSWORD))
            again = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            mail = c.cmd(f"MAIL FROM:<{SENDER}> AUTH=<>")
            rcpt = c.cmd("RCPT TO:<raw-auth@remote.test>")
            content = (headers(SENDER, "raw-auth@remote.test", "raw auth") + BODY).encode()
            c.send(b"DATA\r\n")
            c.reply()
            c.send(dot_stuff(content.decode()) + b".\r\n")
            end = c.reply()
            c.cmd("QUIT")
        R.check("AUTH PLAIN with malformed base64 -> 501 5.5.2", bad64[0] == 501 and bad64[1].startswith("5.5.2"),
                f"reply {bad64}", bad64[1])
        R.check("AUTH LOGIN, a malformed base64 response -> 501 5.5.2",
                bad64_login[0] == 501 and bad64_login[1].startswith("5.5.2"), f"reply {bad64_login}")
        R.check("`*` cancels AUTH LOGIN and AUTH PLAIN -> 501 5.0.0",
                all(r[0] == 501 and r[1].startswith("5.0.0") for r in (cancel, cancel2)),
                f"replies {cancel}, {cancel2}", cancel[1])
        R.check("AUTH LOGIN: 334 Username:/Password: challenges, then 235 2.7.0",
                good == (334, b64("Username:")) and good2 == (334, b64("Password:")) and good3[0] == 235
                and good3[1].startswith("2.7.0"), f"replies {good}, {good2}, {good3}")
        R.check("a second AUTH after success -> 503", again[0] == 503, f"reply {again}", again[1])
        R.check("MAIL FROM:<...> AUTH=<> accepted; RCPT accepted for the authenticated client",
                mail[0] == 250 and rcpt[0] == 250, f"MAIL {mail}, RCPT {rcpt}")
        R.check("raw session: end of data -> 250", end[0] == 250, f"reply {end}", end[1])
        expect_delivered("raw AUTH LOGIN session", "raw-auth", daemon=d_tls, sent=content.decode())

    # --- 6. wrong password: 535 5.7.8 after a growing delay ----------------------------
    def wrong_attempt(mech):
        with tls_session(d_tls.port, CTX) as c:
            c.sock.settimeout(25)
            if mech == "PLAIN":
                t0 = time.monotonic()
                rep = c.cmd(f"AUTH PLAIN {plain('alice', WRONG)}")
            else:
                c.cmd("AUTH LOGIN")
                c.cmd(b64("alice"))
                t0 = time.monotonic()
                rep = c.cmd(b64(WRONG))
            took = time.monotonic() - t0
            c.cmd("QUIT")
        return rep, took

    with R.guard("wrong password", d_tls):
        rep1, t1 = wrong_attempt("PLAIN")
        rep2, t2 = wrong_attempt("LOGIN")
        R.check("wrong password (AUTH PLAIN) -> 535 5.7.8", rep1[0] == 535 and rep1[1].startswith("5.7.8"),
                f"reply {rep1}", f"{rep1[1]}, after {t1:.2f}s")
        R.check("wrong password (AUTH LOGIN) -> 535 5.7.8", rep2[0] == 535 and rep2[1].startswith("5.7.8"),
                f"reply {rep2}", f"after {t2:.2f}s")
        R.check("the second failure from 127.0.0.1 waits noticeably longer (about 1 s, then 2 s)",
                0.8 <= t1 < 5 and t2 >= 1.8 and t2 >= t1 + 0.7, f"first {t1:.2f}s, second {t2:.2f}s",
                f"{t1:.2f}s then {t2:.2f}s")
        warns = [l for l in d_tls.log_text().splitlines() if "AUTH failed for user" in l]
        R.check("each failure logged with the user name and the delay",
                len(warns) >= 2 and "answering after 1s" in warns[-2] and "answering after 2s" in warns[-1],
                f"lines {warns}", warns[-1].split("] ")[-1] if warns else "")
        with tls_session(d_tls.port, CTX) as c:
            t0 = time.monotonic()
            ok = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            t_ok = time.monotonic() - t0
            c.cmd("QUIT")
        rep3, t3 = wrong_attempt("PLAIN")
        R.check("a success answers at once and resets the delay (next failure: about 1 s again)",
                ok[0] == 235 and t_ok < 0.8 and rep3[0] == 535 and 0.8 <= t3 < 1.8,
                f"success {ok} after {t_ok:.2f}s, next failure {rep3} after {t3:.2f}s",
                f"235 after {t_ok:.2f}s, 535 after {t3:.2f}s")

    # --- 7. STARTTLS command injection (CVE-2011-0411 class) ---------------------------
    with R.guard("STARTTLS injection", d_tls):
        with Client(d_tls.port) as c:
            c.reply()
            c.cmd("EHLO inject.client.test")
            # STARTTLS and a MAIL in ONE write: the MAIL was sent in plaintext
            # and must be discarded, never read as if it came through TLS.
            c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
            st = c.reply()
            early = c.buf
            c.buf = b""
            c.sock = CTX.wrap_socket(c.sock, server_hostname="gw.test")
            c.sock.settimeout(10)
            first = c.cmd("EHLO inject.client.test")
            rcpt = c.cmd("RCPT TO:<inject@remote.test>")
            c.cmd("QUIT")
        discarded = wait_for(lambda: [l for l in d_tls.log_text().splitlines()
                                      if "sent after STARTTLS before the handshake discarded" in l], 5)
        R.check("injection: STARTTLS -> 220, no plaintext reply to the injected MAIL",
                st[0] == 220 and early == b"", f"STARTTLS {st}, then {early!r}")
        R.check("injection: the first reply after the handshake is EHLO's 250",
                first[0] == 250 and first[1].startswith("gw.test"), f"first reply {first}", first[1][:40])
        R.check("injection: RCPT then gets 503 (the injected MAIL did not take effect)",
                rcpt[0] == 503, f"RCPT {rcpt}", f"{rcpt[0]} {rcpt[1]}")
        n = len(b"MAIL FROM:<evil@x.test>\r\n")
        R.check(f"injection: detad logs the {n} plaintext octets it discarded",
                discarded and f" {n} octet(s) sent after STARTTLS" in discarded[-1], d_tls.log_tail(5),
                discarded[-1].split("] ", 1)[-1] if discarded else "")

    # --- 8. the loopback detad: plaintext AUTH, auth_required --------------------------
    with R.guard("auth_plaintext = loopback, auth_required", d_loop):
        with Client(d_loop.port) as c:
            c.reply()
            ehlo = c.cmd("EHLO raw.client.test")
            kws = ehlo_keywords(ehlo[1])
            mail = c.cmd(f"MAIL FROM:<{SENDER}>")
            rcpt = c.cmd("RCPT TO:<loop-raw@remote.test>")
            dat = c.cmd("DATA")
            noop, rset = c.cmd("NOOP"), c.cmd("RSET")
            auth = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            mail2 = c.cmd(f"MAIL FROM:<{SENDER}>")
            c.cmd("QUIT")
        R.check("auth_plaintext = loopback: EHLO in plaintext on 127.0.0.1 lists AUTH (and STARTTLS)",
                "AUTH" in kws and "STARTTLS" in kws, f"EHLO {ehlo}", " ".join(kws))
        R.check("auth_required = yes: MAIL before AUTH -> 530 5.7.0", mail[0] == 530 and mail[1].startswith("5.7.0"),
                f"reply {mail}", mail[1])
        R.check("auth_required = yes: RCPT and DATA before AUTH -> 530; NOOP and RSET 250",
                rcpt[0] == 530 and dat[0] == 530 and noop[0] == 250 and rset[0] == 250,
                f"RCPT {rcpt}, DATA {dat}, NOOP {noop}, RSET {rset}")
        R.check("AUTH PLAIN in plaintext on loopback -> 235, then MAIL 250",
                auth[0] == 235 and mail2[0] == 250, f"AUTH {auth}, MAIL {mail2}")
        # RFC 3207 §4.2: what was learnt before TLS (the identity too) is
        # discarded; under auth_required the client must AUTH again.
        with Client(d_loop.port) as c:
            c.reply()
            c.cmd("EHLO raw.client.test")
            auth = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            (st, _), early = c.starttls(CTX)
            c.sock.settimeout(10)
            ehlo = c.cmd("EHLO raw.client.test")
            mail = c.cmd(f"MAIL FROM:<{SENDER}>")
            auth2 = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            mail2 = c.cmd(f"MAIL FROM:<{SENDER}>")
            c.cmd("QUIT")
        R.check("AUTH in plaintext, then STARTTLS: the identity is forgotten (MAIL -> 530), AUTH again works",
                auth[0] == 235 and st == 220 and "AUTH" in ehlo_keywords(ehlo[1]) and mail[0] == 530
                and auth2[0] == 235 and mail2[0] == 250,
                f"AUTH {auth}, STARTTLS {st}, EHLO {ehlo}, MAIL {mail}, AUTH {auth2}, MAIL {mail2}")
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = SENDER, "loop-plain@remote.test", "plaintext auth"
        m.set_content(crlf_to_lf(BODY))
        with smtplib.SMTP("127.0.0.1", d_loop.port, timeout=20) as s:
            s.ehlo("py.client.test")
            s.login("alice", PASSWORD)
            refused = s.send_message(m)
        R.check("smtplib login() + send_message in plaintext (auth_plaintext = loopback) accepted",
                refused == {}, f"refused {refused}")
        expect_delivered("plaintext AUTH", "loop-plain", proto="ESMTPA", tls=False, daemon=d_loop)

    # --- 9. the log lines of accepted messages -----------------------------------------
    with R.guard("log: auth=USER"):
        acc = re.compile(r"id=\S+ peer=\S+ from=<[^>]*> recipients=\d+ size=\d+ mode=\w+(?: auth=(\S+))?$")
        lines = [l for l in d_tls.log_text().splitlines() + d_loop.log_text().splitlines() if acc.search(l)]
        users = [acc.search(l).group(1) for l in lines]
        R.check("every accepted message's log line ends in ` auth=USER` (alice, or bob for SMTP_SSL)",
                lines and all(u in ("alice", "bob") for u in users) and users.count("bob") == 1,
                f"users {users}\n" + "\n".join(lines[-3:]), f"{len(lines)} lines, e.g. ...{lines[-1][-40:]}")

    # --- 10. SIGHUP: the certificate is reloaded; a broken key is refused ---------------
    with R.guard("SIGHUP certificate reload", d_tls):
        shutil.copyfile(PKI["server2.pem"], CERT)
        shutil.copyfile(PKI["server2.key"], KEY)
        n_reloaded = d_tls.log_text().count("configuration reloaded")
        os.kill(d_tls.proc.pid, signal.SIGHUP)
        wait_for(lambda: d_tls.log_text().count("configuration reloaded") > n_reloaded, 10)
        got = {}

        def sees_new():
            got["r"] = s_client(d_tls.port)
            return got["r"][2] == "CN = gw2.test"
        wait_for(sees_new, 15, 0.5)
        rc, proto, peer, out = got["r"]
        R.check("SIGHUP after overwriting cert and key (RSA, PKCS#1): a new STARTTLS session sees CN = gw2.test",
                peer == "CN = gw2.test" and proto == "TLSv1.3", f"peer {peer}, protocol {proto}\n{out[-600:]}\n"
                f"{d_tls.log_tail(5)}", f"{peer}, {proto}")
        rc, proto, peer, out = s_client(TLS_PORT, starttls=False)
        R.check("after the reload: listen_tls serves CN = gw2.test too", peer == "CN = gw2.test",
                f"peer {peer}\n{out[-400:]}", peer)

        with open(KEY, "w") as f:
            f.write("this is not a private key\n")
        n_failed = d_tls.log_text().count("reload failed")
        os.kill(d_tls.proc.pid, signal.SIGHUP)
        wait_for(lambda: d_tls.log_text().count("reload failed") > n_failed, 10)
        err = [l for l in d_tls.log_text().splitlines() if "reload failed" in l]
        R.check("SIGHUP with a garbage key: an ERROR log line naming tls_key, no permission hint",
                err and "ERROR" in err[-1] and "tls_key" in err[-1] and "readable" not in err[-1],
                d_tls.log_tail(5),
                err[-1].split("] ", 1)[-1][:150] if err else "")
        rc, proto, peer, out = s_client(d_tls.port)
        R.check("after the failed reload: still serving CN = gw2.test (the previous certificate)",
                peer == "CN = gw2.test" and proto == "TLSv1.3", f"peer {peer}, protocol {proto}\n{out[-600:]}")
        with tls_session(d_tls.port, CTX) as c:
            auth = c.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}")
            c.cmd("QUIT")
        R.check("after the failed reload: STARTTLS + AUTH still work", auth[0] == 235, f"AUTH {auth}")

        # A valid key that belongs to another certificate (gw.test's
        # certificate, gw2.test's key): refused too.
        shutil.copyfile(PKI["server.pem"], CERT)
        shutil.copyfile(PKI["server2.key"], KEY)
        n_failed = d_tls.log_text().count("reload failed")
        os.kill(d_tls.proc.pid, signal.SIGHUP)
        wait_for(lambda: d_tls.log_text().count("reload failed") > n_failed, 10)
        err = [l for l in d_tls.log_text().splitlines() if "reload failed" in l]
        rc, proto, peer, out = s_client(d_tls.port)
        R.check("SIGHUP with a certificate and a key that do not match: ERROR naming tls_cert, CN = gw2.test kept",
                len(err) > n_failed and "tls_cert" in err[-1] and peer == "CN = gw2.test",
                f"peer {peer}\n{d_tls.log_tail(5)}", err[-1].split("] ", 1)[-1][:150] if err else "")
        R.check("detad still running after both reloads", d_tls.proc.poll() is None,
                f"exit {d_tls.proc.poll()}\n{d_tls.log_tail()}")

    # --- 11. no credentials in any log ---------------------------------------------------
    with R.guard("credentials in logs"):
        texts = {d.name: open(d.log, "rb").read() for d in (d_tls, d_loop)}
        leaks = [(n, f.decode()) for n, t in texts.items() for f in secret_forms() if f in t]
        traced = all(b"TRACE" in t and b"(initial response not shown)" in t for t in texts.values()) and \
            b"(AUTH response, not shown)" in texts["detad-tls"]
        R.check("RUST_LOG=trace logs show every command but no password, in clear or base64",
                traced and not leaks, f"leaks {leaks}, trace lines present {traced}",
                f"{sum(t.count(b'TRACE') for t in texts.values())} trace lines, {len(secret_forms())} forms sought")

sys.exit(R.finish())
