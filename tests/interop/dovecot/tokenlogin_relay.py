#!/usr/bin/env python3
"""tokenlogin_relay.py -- work around Dovecot 2.3.10..2.3.21's imap-urlauth-login panic.

The bug (fixed upstream in 2.4.0 by commit 38924d2d68, "auth:
auth-client-connection - Fix assertion occurring when DOVECOT-TOKEN mechanism
is used"): on its token-login socket (base_dir/token-login/tokenlogin) the
auth server announces its only mechanism as

    MECH<TAB>DOVECOT-TOKEN<LF>

with no "private" flag (src/auth/auth-client-connection.c), although the
mechanism itself is MECH_SEC_PRIVATE (src/auth/mech-dovecot-token.c).
imap-urlauth-login starts DOVECOT-TOKEN with client_auth_begin_private(), and
sasl_server_auth_begin() (src/login-common/sasl-server.c) then asserts
"!private || (mech->flags & MECH_SEC_PRIVATE) != 0" -> Panic. That happens on
every URLFETCH of another user's URL (the imap process hands such URLs to the
imap-urlauth service through imap-urlauth-login).

This relay sits between imap-urlauth-login and the auth server: it listens on
a Unix socket of its own (inside base_dir/token-login, the login process's
chroot) and, for every connection, connects to the real tokenlogin socket and
copies bytes both ways. In the auth server -> client direction it reads the
handshake line by line up to "DONE" and rewrites a MECH line for DOVECOT-TOKEN
that lacks "private" into "MECH<TAB>DOVECOT-TOKEN<TAB>private" -- exactly the
line 2.4.0 sends. Everything else (VERSION, SPID, CUID, COOKIE, the AUTH/OK/
FAIL traffic) passes through unchanged, so the cookie/CPID checks the auth
server does later for the master login still match. start.sh points
imap-urlauth-login at this socket with
    service imap-urlauth-login { executable = imap-urlauth-login <socket name> }
(login-common's main.c takes the auth socket path from the first non-option
argument; a relative path is resolved inside the chroot).

Bounded: it exits when the Dovecot master (--master-pid) is gone, on
SIGTERM/SIGINT, or after --max-seconds. Stdlib only. Logs (one line per
connection and per rewrite) go to stderr, which start.sh sends to a file.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time

MAX_HANDSHAKE = 64 * 1024  # the auth handshake is a few hundred bytes


def log(msg):
    sys.stderr.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")
    sys.stderr.flush()


def fix_mech_line(line):
    """`line` (bytes, without LF) as the relay forwards it: a DOVECOT-TOKEN
    MECH line gets the "private" flag it lacks; all else is unchanged."""
    fields = line.split(b"\t")
    if len(fields) >= 2 and fields[0] == b"MECH" and fields[1] == b"DOVECOT-TOKEN" \
            and b"private" not in fields[2:]:
        return b"\t".join(fields[:2] + [b"private"] + fields[2:]), True
    return line, False


def pump(src, dst):
    """Copies src to dst until EOF or an error, then half-closes dst."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def server_to_client(upstream, client, conn_id):
    """The auth server's side: the handshake line by line (rewritten), then raw."""
    buf = b""
    try:
        while True:
            data = upstream.recv(65536)
            if not data:
                if buf:
                    client.sendall(buf)
                client.shutdown(socket.SHUT_WR)
                return
            buf += data
            out = []
            done = False
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                new, changed = fix_mech_line(line)
                if changed:
                    log(f"conn {conn_id}: rewrote {line!r} -> {new!r}")
                out.append(new + b"\n")
                if line == b"DONE":
                    done = True
                    break
            if out:
                client.sendall(b"".join(out))
            if done:
                if buf:
                    client.sendall(buf)
                break
            if len(buf) > MAX_HANDSHAKE:
                log(f"conn {conn_id}: handshake line too long, closing")
                client.close()
                return
    except OSError:
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return
    pump(upstream, client)


def handle(client, upstream_path, conn_id):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.settimeout(10)
        upstream.connect(upstream_path)
        upstream.settimeout(None)
    except OSError as e:
        log(f"conn {conn_id}: cannot connect to {upstream_path}: {e}")
        client.close()
        upstream.close()
        return
    log(f"conn {conn_id}: relaying to {upstream_path}")
    t = threading.Thread(target=pump, args=(client, upstream), daemon=True)
    t.start()
    server_to_client(upstream, client, conn_id)
    t.join()
    client.close()
    upstream.close()
    log(f"conn {conn_id}: closed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="Unix socket to create (mode 0666)")
    ap.add_argument("--connect", required=True, help="the auth server's tokenlogin socket")
    ap.add_argument("--pidfile", required=True, help="written once the socket listens")
    ap.add_argument("--master-pid", type=int, required=True,
                    help="exit when this process (the Dovecot master) is gone")
    ap.add_argument("--max-seconds", type=float, default=6 * 3600)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    try:
        os.unlink(args.listen)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.listen)
    os.chmod(args.listen, 0o666)  # imap-urlauth-login runs as dovenull
    srv.listen(64)
    srv.settimeout(0.5)
    tmp = args.pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, args.pidfile)
    log(f"listening on {args.listen}, relaying to {args.connect}")

    deadline = time.monotonic() + args.max_seconds
    n = 0
    while not stop.is_set():
        if time.monotonic() > deadline:
            log("max lifetime reached")
            break
        try:
            os.kill(args.master_pid, 0)
        except ProcessLookupError:
            log(f"dovecot master {args.master_pid} is gone")
            break
        except PermissionError:
            pass
        try:
            client, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError as e:
            log(f"accept: {e}")
            time.sleep(0.2)
            continue
        client.settimeout(None)
        n += 1
        threading.Thread(target=handle, args=(client, args.connect, n), daemon=True).start()

    srv.close()
    try:
        os.unlink(args.listen)
    except OSError:
        pass
    try:
        os.unlink(args.pidfile)
    except OSError:
        pass
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
