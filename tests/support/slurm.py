"""A one-node SLURM cluster for a test, and an array job on it (``scripts/shard.sbatch``).

``cluster(base)`` starts its own ``munged`` (its own key and socket), ``slurmctld`` and ``slurmd``
from a config written under ``base`` (this host as the one node, its cores, two GPUs that are
placeholder device files, so ``--gres=gpu:1`` gives each task its own ``CUDA_VISIBLE_DEVICES``), on
free ports, and stops all three afterwards. It needs Debian's ``slurm-wlm`` and ``munge`` and root
(``.ci/run`` installs them). ``run_array`` runs a script as an array job there; without SLURM the
same script runs as plain bash, one process per task, with the array's variables set by hand.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])  # daemons live in sbin


def tool(name: str) -> str:
    """The full path of a SLURM or munge program (sbin included, which a CI PATH may lack)."""
    return shutil.which(name, path=SEARCH) or name


def available() -> Optional[str]:
    """None when a cluster can start here; otherwise why not."""
    missing = [d for d in DAEMONS if shutil.which(d, path=SEARCH) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the one-node cluster runs its daemons as root"
    return None


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on every interface (the daemons bind 0.0.0.0)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait(what: str, ok, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return
        time.sleep(0.3)
    raise RuntimeError(f"SLURM test cluster: {what} not ready in {timeout:.0f} s")


@contextmanager
def cluster(base: Path) -> Iterator[dict]:
    """Start the cluster; yields the environment its clients need (``SLURM_CONF``)."""
    base.mkdir(parents=True, exist_ok=True)
    for d in ("state", "spool", "log", "munge"):
        (base / d).mkdir(exist_ok=True)
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    (base / "munge").chmod(0o700)
    sock = base / "munge" / "munge.socket"
    gpus = []
    for i in range(2):
        dev = base / f"gpu{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, like /dev/null
        gpus.append(str(dev))
    host = socket.gethostname().split(".")[0]
    conf = base / "slurm.conf"
    ctld_port, d_port = _free_ports(2)
    conf.write_text("\n".join([
        "ClusterName=mmtest", f"SlurmctldHost={host}", f"SlurmctldPort={ctld_port}", f"SlurmdPort={d_port}",
        "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", f"AuthInfo=socket={sock}",
        f"StateSaveLocation={base / 'state'}", f"SlurmdSpoolDir={base / 'spool'}",
        f"SlurmctldPidFile={base / 'slurmctld.pid'}", f"SlurmdPidFile={base / 'slurmd.pid'}",
        f"SlurmctldLogFile={base / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={base / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=3600", "GresTypes=gpu",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory=1000 Gres=gpu:2 State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4", ""]))
    (base / "gres.conf").write_text(f"AutoDetect=off\nNodeName={host} Name=gpu File={','.join(gpus)}\n")
    client = {"SLURM_CONF": str(conf)}  # all a client (sbatch, squeue) needs besides the caller's environment
    env = {**os.environ, **client}
    pids: list[int] = []
    try:
        subprocess.run([tool("munged"), "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={base / 'munge' / 'munged.pid'}", f"--log-file={base / 'log' / 'munged.log'}",
                        f"--seed-file={base / 'munge' / 'munged.seed'}"], check=True, capture_output=True)
        _wait("munged", lambda: _pid(base / "munge" / "munged.pid"))
        pids.append(_pid(base / "munge" / "munged.pid"))
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([tool(daemon)], env=env, check=True, capture_output=True)
            _wait(daemon, lambda: _pid(base / f"{daemon}.pid"))
            pids.append(_pid(base / f"{daemon}.pid"))
        _wait("the node", lambda: "idle" in subprocess.run([tool("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True,
                                                            text=True).stdout.split())
        yield client
    finally:
        if len(pids) == 3:  # no job outlives the test
            subprocess.run([tool("scancel"), "--partition=test"], env=env, capture_output=True)
            _wait("the jobs to end", lambda: not subprocess.run([tool("squeue"), "-h"], env=env, capture_output=True,
                                                                 text=True).stdout.strip(), timeout=30)
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 15
            while time.monotonic() < end and os.path.exists(f"/proc/{pid}"):
                time.sleep(0.1)


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE")


def run_array(script: Path, tasks: int, env: dict, logs: Path, slurm_env: Optional[dict], timeout: int = 1800) -> dict:
    """Run ``script`` as tasks 0..tasks-1 of one array, in ``env`` (plus ``slurm_env``, the cluster's client
    settings; None: plain bash, one process per task). Returns {"logs": [...], "exit": [...], "overlap": ...}:
    an exit is 0 only for a task that completed with 0 and no signal; overlap (SLURM only, None for bash,
    where it holds by construction) whether every task was running at one moment."""
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"task-{i}.out" for i in range(tasks)]
    if slurm_env is None:
        procs = []
        for i, p in enumerate(paths):
            with open(p, "w") as out:
                procs.append(subprocess.Popen(["bash", str(script)], stdout=out, stderr=subprocess.STDOUT,
                                              env={**env, "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_MIN": "0",
                                                   "SLURM_ARRAY_TASK_COUNT": str(tasks)}))
        codes = [p.wait(timeout=timeout) for p in procs]
        return {"logs": [p.read_text() for p in paths], "exit": codes, "overlap": None}
    e = {**env, **slurm_env}
    job = subprocess.run([tool("sbatch"), "--parsable", f"--array=0-{tasks - 1}", f"--output={logs}/task-%a.out",
                          "--export=ALL", str(script)], env=e, capture_output=True, text=True,
                         check=True).stdout.strip().split(";")[0]
    overlap, end, states = False, time.monotonic() + timeout, {}
    while time.monotonic() < end:
        show = subprocess.run([tool("scontrol"), "-o", "show", "job", job], env=e, capture_output=True, text=True)
        if show.returncode == 0:
            states = {int(m["task"]): (m["state"], m["code"], m["signal"]) for m in re.finditer(
                r"ArrayTaskId=(?P<task>\d+) .*?JobState=(?P<state>\w+) .*?ExitCode=(?P<code>\d+):(?P<signal>\d+)",
                show.stdout)}
            running = [v[0] for v in states.values()]
            overlap = overlap or (len(states) == tasks and running.count("RUNNING") == tasks)
            if len(states) == tasks and all(st in TERMINAL for st in running):
                break
        time.sleep(1)
    else:
        subprocess.run([tool("scancel"), job], env=e)
        raise TimeoutError(f"array job {job} still running after {timeout} s: {states}")
    codes = [0 if states[i] == ("COMPLETED", "0", "0") else int(states[i][1]) or 1 for i in range(tasks)]
    return {"logs": [p.read_text() if p.exists() else "" for p in paths], "exit": codes, "overlap": overlap}
