#!/usr/bin/env python3
"""urlfetch.py [--workdir W] [--user U] [--starttls] PORT URL -- URLFETCH as detad would.

Logs in to 127.0.0.1:PORT as `submit` (the imap_urlauth_submit_user; RFC 4468
section 3.3: the submit server's own credentials) and runs

    URLFETCH "<URL>"

(RFC 4467 section 7). The fetched bytes go to stdout unchanged (binary).

The password is read from W/USER.pass; W is --workdir or, when that is not
given, the environment variable DOVECOT_WORKDIR (start.sh's WORKDIR).
--user U logs in as another user (e.g. handset, to show that a plain user
cannot use a submit+ URL). --starttls does STARTTLS first and checks the
certificate against W/tls/cert.pem.

Exit status:
  0  fetched (bytes on stdout)
  1  "* URLFETCH <url> NIL": the server says the URL is invalid or not
     permitted for this user (wrong token, wrong access, ...)
  2  a tagged NO/BAD, no untagged URLFETCH, or a connection failure (for
     example the connection dropping when a server process panics)
  3  usage
Each non-zero exit prints one line saying why on stderr.
"""

import argparse
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imaputil  # noqa: E402
from imaputil import Failure, command, quote  # noqa: E402


class Nil(Exception):
    pass


def urlfetch(args, workdir):
    password = imaputil.read_password(workdir, args.user)
    imap = imaputil.login(args.port, args.user, password, args.starttls,
                          os.path.join(workdir, "tls", "cert.pem"))
    try:
        typ, text, untagged = command(imap, "URLFETCH", quote(args.url))
        if typ != "OK":
            raise Failure(f"URLFETCH: tagged {typ}: {text}")
        if not untagged:
            raise Failure(f"URLFETCH: tagged OK without an untagged URLFETCH ({text})")
        item = untagged[0]
        # imaplib gives (b'"url" {n}', data) for a literal, or b'"url" NIL'
        # (or b'"url" ""') when there is no literal.
        if isinstance(item, tuple):
            return item[1]
        line = item.decode("utf-8", "replace")
        m = re.fullmatch(r'\s*(?:"(?:[^"\\]|\\.)*"|\S+)\s+(.*?)\s*', line)
        value = m.group(1) if m else line
        if value.upper() == "NIL":
            raise Nil(f"URLFETCH returned NIL for {args.url} (as {args.user})")
        if value == '""':
            return b""
        raise Failure(f"URLFETCH: cannot parse the response: {line!r}")
    finally:
        imaputil.logout(imap)


def main():
    ap = argparse.ArgumentParser(description="URLFETCH a URL as submit; bytes to stdout.")
    ap.add_argument("port", type=int)
    ap.add_argument("url")
    ap.add_argument("--workdir", default=os.environ.get("DOVECOT_WORKDIR"))
    ap.add_argument("--user", default="submit")
    ap.add_argument("--starttls", action="store_true")
    args = ap.parse_args()
    if not args.workdir:
        imaputil.die("no WORKDIR: give --workdir or set DOVECOT_WORKDIR", 3)
    try:
        data = urlfetch(args, args.workdir)
    except Nil as e:
        imaputil.die(str(e), 1)
    except (Failure, OSError) as e:
        imaputil.die(str(e), 2)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
