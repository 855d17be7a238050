#!/usr/bin/env python3
"""Run a command where the kernel can execute ARM binaries through qemu-user.

    tests/arm/binfmt.py ARCH[,ARCH...] COMMAND [ARGS...]     ARCH: aarch64, arm

detad runs a pipe program through itself (it execs /proc/self/exe as a
trampoline). Under qemu-user that exec reaches the kernel with the ARM binary,
which only works when binfmt_misc hands ARM ELF files to qemu (Debian:
qemu-user-binfmt, on a host that has binfmt_misc). Without such a handler the
pipe deliveries of tests/arm/smoke.py fail with "Exec format error".

When a handler for every ARCH is registered already, COMMAND runs as it is.
Otherwise it runs in a new user and mount namespace (uids and gids 0-65535
mapped to themselves, so root stays root and can still run pipe programs as
nobody) with a binfmt_misc instance of its own (Linux >= 6.7) in which
/usr/bin/qemu-ARCH is registered: nothing changes outside. Needs root. Exits
with COMMAND's status; 1 with a message when the namespace cannot be set up.
Python 3 standard library only.
"""

import ctypes
import os
import shutil
import sys

BINFMT = "/proc/sys/fs/binfmt_misc"

# From QEMU's scripts/qemu-binfmt-conf.sh: ELF class, data, machine; the mask
# accepts ET_EXEC and ET_DYN.
MAGIC = {
    "aarch64": (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "arm": (r"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
}

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
ID_MAP = "0 0 65536\n"


def die(msg):
    print(f"binfmt.py: {msg}", file=sys.stderr)
    sys.exit(1)


def registered(arch):
    """A handler named qemu-ARCH (Debian's and QEMU's name) is enabled."""
    try:
        with open(os.path.join(BINFMT, f"qemu-{arch}")) as f:
            return f.readline().strip() == "enabled"
    except OSError:
        return False


def libc_call(libc, name, *args):
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        die(f"{name}: {os.strerror(err)}")


def sandbox(archs, argv):
    interpreters = {}
    for arch in archs:
        path = shutil.which(f"qemu-{arch}")
        if not path:
            die(f"qemu-{arch} not found (Debian package qemu-user)")
        interpreters[arch] = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_void_p]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        libc_call(libc, "unshare", CLONE_NEWUSER | CLONE_NEWNS)
        os.write(ready_w, b"u")
        os.close(ready_w)
        if os.read(go_r, 1) != b"g":
            os._exit(1)  # the parent could not write the id maps; it says why
        os.close(go_r)
        libc_call(libc, "mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
        libc_call(libc, "mount", b"binfmt_misc", BINFMT.encode(), b"binfmt_misc", 0, None)
        for arch, interp in interpreters.items():
            magic, mask = MAGIC[arch]
            # F: the interpreter is opened now, whatever the namespace sees later.
            rule = f":qemu-{arch}:M::{magic}:{mask}:{interp}:F"
            try:
                with open(os.path.join(BINFMT, "register"), "w") as f:
                    f.write(rule)
            except OSError as e:
                die(f"cannot register qemu-{arch} in a private binfmt_misc: {e}")
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            die(f"{argv[0]}: {e}")
    os.close(ready_w)
    os.close(go_r)
    if os.read(ready_r, 1) != b"u":
        os.waitpid(pid, 0)
        die("cannot create a user and mount namespace (needs root, or user namespaces)")
    try:
        # The parent, root in the initial namespace, may map any ids.
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(ID_MAP)
    except OSError as e:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        die(f"cannot write the id maps of the namespace: {e}")
    os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    archs = sys.argv[1].split(",")
    unknown = [a for a in archs if a not in MAGIC]
    if unknown:
        print(f"binfmt.py: unknown ARCH {','.join(unknown)} (known: {', '.join(MAGIC)})", file=sys.stderr)
        return 2
    argv = sys.argv[2:]
    missing = [a for a in archs if not registered(a)]
    if not missing:
        os.execvp(argv[0], argv)
    print(f"binfmt.py: no binfmt_misc handler for {', '.join(missing)}; "
          f"running in a namespace with a private one", file=sys.stderr, flush=True)
    code = sandbox(archs, argv)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
