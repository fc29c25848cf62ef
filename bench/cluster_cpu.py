"""CPU time of a PostgreSQL cluster and of one process, read from /proc.

Shared by the benchmarks in bench/.  A cluster's CPU is everything its
postmaster and the postmaster's children (backends, background workers,
walwriter, checkpointer, ...) spent.  A child that exits between two
snapshots has its whole CPU time added to the postmaster's cutime/cstime
when the postmaster reaps it, so ClusterCpu.delta_ms() takes that back out
for the part the child had spent before the first snapshot.  Linux only;
the resolution is one clock tick (10 ms at USER_HZ=100), so measure runs
that take seconds of CPU.
"""
import os

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(ppid, utime, stime, cutime, cstime) in ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name may hold spaces or parentheses: fields follow the last ')'
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def process_cpu_ms(pid):
    """CPU time (user + system) one process has used so far, in ms."""
    st = _stat(pid)
    return None if st is None else (st[1] + st[2]) * TICK_MS


class ClusterCpu:
    def __init__(self, datadir):
        with open(os.path.join(datadir, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def snapshot(self):
        pm = _stat(self.postmaster)
        children = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = _stat(d)
            if st is not None and st[0] == self.postmaster:
                children[int(d)] = st[1] + st[2]
        return (pm[1] + pm[2] + pm[3] + pm[4], children)

    @staticmethod
    def delta_ms(a, b):
        """CPU the cluster used between snapshots a and b (b after a)."""
        pm_a, ch_a = a
        pm_b, ch_b = b
        ticks = pm_b - pm_a
        for pid, t in ch_b.items():
            ticks += t - ch_a.get(pid, 0)
        for pid, t in ch_a.items():
            if pid not in ch_b:
                ticks -= t
        return ticks * TICK_MS

    def processes(self):
        """{pid: command line} of the postmaster's children now."""
        out = {}
        for pid in self.snapshot()[1]:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except FileNotFoundError:
                pass
        return out
