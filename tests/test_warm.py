"""Warm starts (pipeline/warm.py): a command forked from the server behaves like a fresh process.

The commands here run a probe module (``python -m probe ...`` in a temporary directory) through
``warm.run``, each client in its own process, against a server in a private runtime directory that
preloads only ``json`` (the real preload list is exercised by every student stage of the end-to-end
tests, and tests/test_e2e.py compares a warm and a cold evaluate byte for byte).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline import warm
from support import ROOT

pytestmark = pytest.mark.skipif(not warm.enabled({}), reason="warm starts need Linux, pidfds and no NVIDIA device")

PROBE = '''import json, os, random, sys, time
VERSION = {version}
cmd = sys.argv[1]
if cmd == "info":
    print(json.dumps({{"cwd": os.getcwd(), "argv": sys.argv[1:], "probe": os.environ.get("PROBE"),
                      "ppid": os.getppid(), "pid": os.getpid(), "sid": os.getsid(0), "rand": random.random(),
                      "path0": sys.path[0], "version": VERSION, "stdin": sys.stdin.read(),
                      "umask": os.umask(0), "cpus": sorted(os.sched_getaffinity(0))}}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
if cmd == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(120)
'''
CLIENT = "import sys; from pipeline import warm; s = warm.run(sys.argv[1:], module='probe'); " \
         "print('FALLBACK' if s is None else '', end=''); sys.exit(0 if s is None else s)"


@pytest.fixture
def box(tmp_path):
    """A directory with the probe package, and the environment of a private warm server."""
    (tmp_path / "probe").mkdir()
    write_probe(tmp_path, 1)
    run_dir = Path(tempfile.mkdtemp(prefix="mmw", dir="/tmp"))  # a socket path has at most 107 bytes
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), MM_WARM_PRELOAD="json", MM_WARM_IDLE="30", PROBE="p1",
               PYTHONPATH=str(ROOT))
    env.pop("MM_WARM", None)
    yield tmp_path, env
    for log in run_dir.glob("*/*.log"):  # stop the servers this test started
        for pid in re.findall(r"\(pid (\d+)\)", log.read_text()):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
    shutil.rmtree(run_dir, ignore_errors=True)


def write_probe(d: Path, version: int) -> None:
    (d / "probe" / "__main__.py").write_text(PROBE.format(version=version))


def client(d: Path, env: dict, *args: str, stdin: str = "", umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLIENT, *args], cwd=d, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, umask=umask)


def info(d: Path, env: dict, code: int = 0, stdin: str = "", umask: int = 0o022) -> tuple[dict, subprocess.CompletedProcess]:
    r = client(d, env, "info", str(code), stdin=stdin, umask=umask)
    assert "FALLBACK" not in r.stdout, r.stderr
    return json.loads(r.stdout), r


def test_a_command_gets_its_streams_directory_environment_umask_and_exit_status(box):
    d, env = box
    first, r = info(d, env, code=3, stdin="hello")
    assert r.returncode == 3 and r.stderr == "to stderr\n"
    assert first["cwd"] == str(d) and first["argv"] == ["info", "3"] and first["probe"] == "p1"
    assert first["stdin"] == "hello" and first["path0"] == ""  # what `python -c` puts first on sys.path
    assert first["sid"] == first["pid"]  # its own session: signals to the group reach it and its children
    assert first["umask"] == 0o022 and first["cpus"] == sorted(os.sched_getaffinity(0))
    second, r = info(d, env, umask=0o027)
    assert r.returncode == 0 and second["umask"] == 0o027  # the command's umask, not the server's
    assert second["ppid"] == first["ppid"]  # the same server forked both
    assert second["rand"] != first["rand"]  # `random` reseeded per command, as in a fresh process


def test_the_child_runs_the_code_on_disk_not_the_servers(box):
    d, env = box
    assert info(d, env)[0]["version"] == 1
    write_probe(d, 2)
    assert info(d, env)[0]["version"] == 2


def test_another_environment_gets_another_server(box):
    d, env = box
    a = info(d, env)[0]
    b = info(d, dict(env, PROBE="p2"))[0]
    assert b["probe"] == "p2" and b["ppid"] != a["ppid"]


def _sleeper(d: Path, env: dict) -> tuple[subprocess.Popen, int]:
    pidfile = d / "child.pid"
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, "sleep", str(pidfile)], cwd=d, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, int(pidfile.read_text())


def _gone(pid: int, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_signal_to_the_command_reaches_the_child_and_the_command_dies_of_it(box):
    d, env = box
    proc, child = _sleeper(d, env)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    assert _gone(child)


def test_a_killed_command_takes_its_child_with_it(box):
    d, env = box
    proc, child = _sleeper(d, env)
    proc.kill()
    proc.wait(timeout=30)
    assert _gone(child)


def test_the_server_exits_when_idle_and_removes_its_socket(box):
    d, env = box
    env = dict(env, MM_WARM_IDLE="1")
    server = info(d, env)[0]["ppid"]
    assert _gone(server, within_s=20)
    assert not list((Path(env["XDG_RUNTIME_DIR"])).glob("*/*.sock"))


def test_no_reachable_server_means_the_command_runs_in_its_own_process(box):
    d, env = box
    shared = Path(env["XDG_RUNTIME_DIR"]) / f"mindsmirror-warm-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # not private: refuse it
    r = client(d, env, "info", "0")
    assert r.returncode == 0 and r.stdout == "FALLBACK"


def test_when_warm_starts_are_off():
    assert warm.enabled({})
    assert not warm.enabled({"MM_WARM": "0"})
    assert not warm.enabled({"LOCAL_RANK": "0"})  # torchrun workers
    assert not warm.enabled({warm._CHILD_FLAG: "1"})  # a forked command never forks again


def test_files_of_long_gone_servers_are_tidied_when_a_server_starts(box):
    d, env = box
    run_dir = Path(env["XDG_RUNTIME_DIR"]) / f"mindsmirror-warm-{os.getuid()}"
    run_dir.mkdir(mode=0o700)
    old, recent = run_dir / "0ld.log", run_dir / "recent.log"
    for f in (old, run_dir / "0ld.lock", recent):
        f.write_text("")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    os.utime(run_dir / "0ld.lock", (eight_days_ago, eight_days_ago))
    info(d, env)
    assert not old.exists() and not (run_dir / "0ld.lock").exists() and recent.exists()


def test_a_runtime_directory_too_long_for_a_socket_path_falls_back_to_tmp(tmp_path):
    long_dir = tmp_path / ("x" * 60)
    long_dir.mkdir()
    assert warm._socket_dir({"XDG_RUNTIME_DIR": str(long_dir)}).parent == Path("/tmp")
