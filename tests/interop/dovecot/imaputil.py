"""Shared bits of mint.py and urlfetch.py (stdlib only): log in to the private
Dovecot of start.sh with imaplib, quote IMAP strings, run the RFC 4467
commands imaplib does not know (GENURLAUTH, URLFETCH) and read their untagged
responses."""

import imaplib
import os
import socket
import ssl
import sys

# imaplib refuses commands it does not know; these two are valid once
# authenticated (RFC 4467 sections 6 and 7).
imaplib.Commands.setdefault("GENURLAUTH", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("URLFETCH", ("AUTH", "SELECTED"))

TIMEOUT = 30  # seconds, every socket operation


class Failure(Exception):
    """A clear, one-line reason to exit non-zero."""


def quote(s):
    """`s` as an IMAP quoted string (RFC 3501 quoted: \\ and " escaped)."""
    if any(c in s for c in "\r\n\0"):
        raise Failure(f"cannot quote a string with CR/LF/NUL: {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_password(workdir, user):
    path = os.path.join(workdir, f"{user}.pass")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise Failure(f"cannot read the password of {user}: {e}") from None


def login(port, user, password, starttls=False, cafile=None):
    """An imaplib connection to 127.0.0.1:port, logged in as `user`.
    With `starttls`, STARTTLS first, verifying the server certificate against
    `cafile` (start.sh's self-signed WORKDIR/tls/cert.pem)."""
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    except (OSError, imaplib.IMAP4.error) as e:
        raise Failure(f"cannot connect to 127.0.0.1:{port}: {e}") from None
    try:
        if starttls:
            ctx = ssl.create_default_context(cafile=cafile)
            imap.starttls(ssl_context=ctx)
        imap.login(user, password)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
        try:
            imap.shutdown()
        except OSError:
            pass
        raise Failure(f"login as {user} failed: {e}") from None
    return imap


def command(imap, name, *args):
    """Runs `name args...`; returns the tagged status (str), the tagged text
    and the untagged `name` responses (imaplib's raw list)."""
    try:
        typ, dat = imap._simple_command(name, *args)
    except imaplib.IMAP4.abort as e:
        # The connection died under the command (e.g. the server process
        # behind it crashed).
        raise Failure(f"{name}: connection aborted: {e}") from None
    except imaplib.IMAP4.error as e:
        # imaplib raises on BAD; NO comes back as typ == "NO".
        return "BAD", str(e), []
    except (OSError, socket.timeout) as e:
        raise Failure(f"{name}: connection error: {e}") from None
    text = b" ".join(d for d in dat if isinstance(d, bytes)).decode("utf-8", "replace")
    _, untagged = imap._untagged_response(typ, dat, name)
    return typ, text, [u for u in untagged if u is not None]


def logout(imap):
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def die(msg, code):
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {msg}\n")
    sys.exit(code)
