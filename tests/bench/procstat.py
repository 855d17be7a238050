"""procstat.py -- which processes belong to one server, and what they cost.

Used by tests/bench/harness.py (Python 3 stdlib only, Linux only).

A `Group` is the set of processes of one server under test:

- cgroup v2 (preferred): a child cgroup per server under
  <cgroup2 mount>/detad-bench.<pid>/. The server's first process moves itself
  into it *before* it execs (see `Group.wrap`), so every process it ever
  forks -- Postfix's master, smtpd, cleanup, qmgr, smtp, ..., detad's pipe
  children -- is counted, short-lived ones included: `cpu.stat` usage_usec
  keeps the CPU time of processes that have exited. `io.stat` and
  `memory.peak` are read too when the io/memory controllers can be enabled
  there (not on a hybrid cgroup v1/v2 host, where v1 owns them).
- fallback (no writable cgroup2): the process tree below a root pid, found by
  a /proc scan; CPU = utime+stime of the live processes plus cutime+cstime
  (children the tree has reaped). A process that was reaped by something
  outside the tree is lost; `method` says which one is in use.

Bytes written are /proc/PID/io write_bytes - cancelled_write_bytes summed
over the group. The kernel adds a reaped child's counters to its parent's, so
the sum over (live processes) is monotonic as long as the reaper is in the
group (true for Postfix's master and for detad).

`PeakSampler` samples the summed PSS (/proc/PID/smaps_rollup) of a group
every `interval` seconds in a thread and keeps the largest sum.
"""

import os
import signal
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cgroup2_mount():
    """The mount point of the cgroup v2 hierarchy, or None."""
    text = _read("/proc/self/mounts") or ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return parts[1]
    return None


class CgroupParent:
    """<mount>/detad-bench.<pid>/: the parent of the per-server cgroups."""

    def __init__(self, tag):
        self.path = None
        self.why_not = None
        self.controllers = set()
        mount = cgroup2_mount()
        if mount is None:
            self.why_not = "no cgroup2 mount"
            return
        path = os.path.join(mount, f"detad-bench.{tag}")
        try:
            os.mkdir(path)
        except OSError as e:
            self.why_not = f"cannot create {path}: {e.strerror}"
            return
        # The procs file must be writable for us to move processes in.
        if not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
            self.why_not = f"{path}/cgroup.procs not writable"
            os.rmdir(path)
            return
        self.path = path
        avail = (_read(os.path.join(path, "cgroup.controllers")) or "").split()
        for c in ("memory", "io"):
            if c in avail:
                try:
                    with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                        f.write(f"+{c}")
                    self.controllers.add(c)
                except OSError:
                    pass

    def child(self, name):
        if self.path is None:
            return None
        p = os.path.join(self.path, name)
        os.makedirs(p, exist_ok=True)
        return p

    def remove(self):
        if self.path is None:
            return
        for name in os.listdir(self.path):
            p = os.path.join(self.path, name)
            if os.path.isdir(p):
                _rmdir_bounded(p)
        _rmdir_bounded(self.path)


def poll(pred, secs, interval=0.05):
    """Call pred() until it is true: at most secs seconds and
    secs / interval + 1 calls. Returns the last result."""
    deadline = time.monotonic() + secs
    r = False
    for _ in range(int(secs / interval) + 1):
        r = pred()
        if r or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return r


def _rmdir_bounded(path, secs=5.0):
    def gone():
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False

    return poll(gone, secs, 0.1)


def _stat_fields(pid):
    """Fields after the comm of /proc/PID/stat: [state, ppid, ...]."""
    s = _read(f"/proc/{pid}/stat")
    if not s:
        return None
    return s[s.rindex(")") + 2:].split()


def starttime(pid):
    f = _stat_fields(pid)
    return f[19] if f else None


def alive(pid, start=None):
    f = _stat_fields(pid)
    if not f or f[0] in ("Z", "X"):
        return False
    return start is None or f[19] == start


class Group:
    """The processes of one server (see the module docstring)."""

    def __init__(self, name, parent):
        self.name = name
        self.cg = parent.child(name) if parent is not None else None
        self.roots = []  # (pid, starttime) for the fallback and for stopping
        self.method = "cgroup2" if self.cg else "process tree (/proc)"

    def wrap(self, argv):
        """argv run so that the process joins the cgroup before it execs."""
        if not self.cg:
            return list(argv)
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" || exit 97; exec "$@"', self.cg] + list(argv)

    def add_root(self, pid):
        self.roots.append((pid, starttime(pid)))

    def pids(self):
        if self.cg:
            text = _read(os.path.join(self.cg, "cgroup.procs")) or ""
            return [int(x) for x in text.split()]
        return self._tree()[0]

    def _tree(self):
        kids, cpu = {}, {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            f = _stat_fields(d)
            if not f or f[0] in ("Z", "X"):
                continue
            kids.setdefault(int(f[1]), []).append(int(d))
            cpu[int(d)] = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        out = []
        todo = [p for p, st in self.roots if alive(p, st)]
        seen = set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            out.append(p)
            todo.extend(kids.get(p, ()))
        return out, sum(cpu.get(p, 0) for p in out)

    def cpu_usec(self):
        if self.cg:
            for line in (_read(os.path.join(self.cg, "cpu.stat")) or "").splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec":
                    return int(v)
            return 0
        return self._tree()[1] * 1_000_000 // TICK

    def io_written(self):
        """Bytes the group's processes caused to be written to storage
        (write_bytes - cancelled_write_bytes, /proc/PID/io)."""
        total = 0
        for pid in self.pids():
            text = _read(f"/proc/{pid}/io")
            if not text:
                continue
            vals = dict(
                (k.strip(), int(v)) for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)
            )
            total += vals.get("write_bytes", 0) - vals.get("cancelled_write_bytes", 0)
        return total

    def cgroup_io_wbytes(self, devno):
        """io.stat wbytes for device MAJ:MIN, when the io controller is on."""
        if not self.cg:
            return None
        text = _read(os.path.join(self.cg, "io.stat"))
        if text is None:
            return None
        for line in text.splitlines():
            parts = line.split()
            if parts and parts[0] == devno:
                for kv in parts[1:]:
                    if kv.startswith("wbytes="):
                        return int(kv[7:])
        return 0

    def memory_peak(self):
        if not self.cg:
            return None
        text = _read(os.path.join(self.cg, "memory.peak"))
        return int(text) if text and text.strip().isdigit() else None

    def pss_kb(self):
        """(sum of Pss over the group in KiB, number of processes)."""
        total = n = 0
        for pid in self.pids():
            text = _read(f"/proc/{pid}/smaps_rollup")
            if not text:
                continue
            for line in text.splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    n += 1
                    break
        return total, n

    def kill_all(self, secs=10.0):
        """SIGTERM, then SIGKILL, every process still in the group (by pid;
        all of them were started by this harness). Bounded in time."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            if poll(lambda: not self.pids(), secs / 2, 0.1):
                return True
        return not self.pids()


class PeakSampler(threading.Thread):
    """Largest summed PSS of a group, sampled every `interval` s until stop()
    (or `max_secs`). Also records its own CPU time, to report the cost of
    sampling."""

    def __init__(self, group, interval=0.05, max_secs=3600.0):
        super().__init__(daemon=True)
        self.group, self.interval, self.max_secs = group, interval, max_secs
        self.peak_kb = 0
        self.peak_procs = 0
        self.samples = 0
        self.cpu_s = 0.0
        self._stop_ev = threading.Event()

    def run(self):
        c0 = time.thread_time()
        deadline = time.monotonic() + self.max_secs
        for _ in range(int(self.max_secs / self.interval) + 1):
            kb, n = self.group.pss_kb()
            self.samples += 1
            if kb > self.peak_kb:
                self.peak_kb, self.peak_procs = kb, n
            if self._stop_ev.wait(self.interval) or time.monotonic() > deadline:
                break
        self.cpu_s = time.thread_time() - c0

    def stop(self):
        self._stop_ev.set()
        self.join(10)
        return self.peak_kb


def block_device_of(path):
    """('MAJ:MIN', /sys/dev/block/MAJ:MIN/stat path or None) for the
    filesystem holding path."""
    st = os.stat(path)
    devno = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    stat = f"/sys/dev/block/{devno}/stat"
    return devno, (stat if os.path.exists(stat) else None)


def device_sectors_written(stat_path):
    """Sectors (512 bytes) written to the block device so far (all writers)."""
    if not stat_path:
        return None
    text = _read(stat_path)
    if not text:
        return None
    return int(text.split()[6])


def filesystem_of(path):
    """(fstype, source, mount point) of the filesystem holding path."""
    path = os.path.realpath(path)
    best = ("?", "?", "/")
    for line in (_read("/proc/self/mounts") or "").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mp = parts[1].replace("\\040", " ")
        if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[2]):
            best = (parts[2], parts[0], mp)
    return best
