#!/usr/bin/env python3
"""mint.py WORKDIR PORT MESSAGE_FILE -- store a message, print its URLAUTH URL.

As the handset would (RFC 4467 + RFC 4468): log in to the private Dovecot of
start.sh (127.0.0.1:PORT) as `handset` (password from WORKDIR/handset.pass),
create the mailbox `outbox` if needed, APPEND MESSAGE_FILE to it, take the
UIDVALIDITY and UID from the APPENDUID response code (UIDPLUS), and run

    GENURLAUTH "imap://handset@127.0.0.1:PORT/outbox;uidvalidity=V/;uid=U;urlauth=submit+handset" INTERNAL

Prints the minted URL (";urlauth=submit+handset:internal:<32 hex>" at the
end) and a newline on stdout, nothing else.

Dovecot's URL rules (lib-imap-urlauth/imap-urlauth.c): the host must equal
imap_urlauth_host (127.0.0.1) and the port imap_urlauth_port; a URL without a
port means 143, so the port is always written. The user in the URL must be the
logged-in user.

The message is sent with CRLF line ends: imaplib's append() turns any bare LF
or CR into CRLF (IMAP requires CRLF), so compare a fetch against the file with
its line ends made CRLF.

Options: --user USER (mint as another user, e.g. `other`; its password from
WORKDIR/USER.pass), --access ACCESS (default submit+USER), --mailbox NAME
(default outbox), --starttls (STARTTLS first, certificate checked against
WORKDIR/tls/cert.pem). Exit 0 with the URL; 1 with a reason on stderr.
"""

import argparse
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imaputil  # noqa: E402
from imaputil import Failure, command, quote  # noqa: E402


def mint(args):
    password = imaputil.read_password(args.workdir, args.user)
    with open(args.message_file, "rb") as f:
        message = f.read()
    imap = imaputil.login(args.port, args.user, password, args.starttls,
                          os.path.join(args.workdir, "tls", "cert.pem"))
    try:
        # CREATE: NO [ALREADYEXISTS] on a second run is fine.
        typ, text, _ = command(imap, "CREATE", quote(args.mailbox))
        if typ != "OK" and "ALREADYEXISTS" not in text.upper():
            raise Failure(f"CREATE {args.mailbox}: {typ} {text}")

        typ, dat = imap.append(quote(args.mailbox), None, None, message)
        text = b" ".join(d for d in dat if isinstance(d, bytes)).decode()
        if typ != "OK":
            raise Failure(f"APPEND to {args.mailbox}: {typ} {text}")
        m = re.search(r"\[APPENDUID (\d+) (\d+)\]", text, re.I)
        if not m:
            raise Failure(f"APPEND answered without APPENDUID: {text}")
        uidvalidity, uid = m.group(1), m.group(2)

        access = args.access or f"submit+{args.user}"
        rump = (f"imap://{args.user}@127.0.0.1:{args.port}/{args.mailbox}"
                f";uidvalidity={uidvalidity}/;uid={uid};urlauth={access}")
        typ, text, untagged = command(imap, "GENURLAUTH", quote(rump), "INTERNAL")
        if typ != "OK":
            raise Failure(f"GENURLAUTH {rump}: {typ} {text}")
        if not untagged:
            raise Failure("GENURLAUTH OK without an untagged GENURLAUTH response")
        # * GENURLAUTH "url" (a quoted string, or an atom)
        raw = untagged[0]
        raw = raw.decode() if isinstance(raw, bytes) else raw[0].decode()
        m = re.fullmatch(r'\s*"((?:[^"\\]|\\.)*)"\s*|\s*(\S+)\s*', raw)
        if not m:
            raise Failure(f"cannot parse the GENURLAUTH response: {raw!r}")
        url = m.group(1) if m.group(1) is not None else m.group(2)
        url = re.sub(r"\\(.)", r"\1", url)
        if not url.startswith(rump + ":internal:"):
            raise Failure(f"GENURLAUTH returned an unexpected URL: {url}")
        return url
    finally:
        imaputil.logout(imap)


def main():
    ap = argparse.ArgumentParser(description="Store a message in outbox; print its URLAUTH URL.")
    ap.add_argument("workdir")
    ap.add_argument("port", type=int)
    ap.add_argument("message_file")
    ap.add_argument("--user", default="handset")
    ap.add_argument("--access", default=None, help="default submit+USER")
    ap.add_argument("--mailbox", default="outbox")
    ap.add_argument("--starttls", action="store_true")
    args = ap.parse_args()
    try:
        url = mint(args)
    except (Failure, OSError) as e:
        imaputil.die(str(e), 1)
    sys.stdout.write(url + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
