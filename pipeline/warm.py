"""Warm starts: the student commands run as children of a server that imported torch and transformers once.

Every ``dvc.yaml`` stage is its own ``python -m pipeline <command>`` process, and on a 2-core CPU
machine importing torch and transformers' T5 takes about 6 s of each stage1 / stage2 / evaluate
process: most of a tiny stage's time. So those commands (``COMMANDS``) start from a fork server
that has already imported them (the zygote pattern; stdlib ``multiprocessing.forkserver`` does the
same within one program's lifetime, this one outlives a stage):

* The first command starts the server (detached, its log beside its socket) and connects. The
  socket lives in a per-user 0700 directory and is named by a hash of everything the imports could
  depend on: the interpreter, ``sys.path``, the environment, the installed preloaded packages and
  this file. A different environment or install gets a different server.
* A command sends its argv, working directory, environment, umask and CPU affinity, and its
  stdin/stdout/stderr file descriptors. The server forks; the child takes all of these, starts a
  new session, reseeds ``random`` and runs ``python -m pipeline <argv>``.
  The server never imports the project's own code, so the child always runs the code on disk.
* The command waits for the child's exit status and exits with it. It forwards SIGINT, SIGTERM and
  SIGHUP to the child's process group, and if the command dies, the server kills the child.
* The server exits when nothing has run for ``MM_WARM_IDLE`` seconds (default 60). The lock and
  log files of a key go when a server starts and that key has had none for 7 days.

Results are unchanged: the child computes what a fresh process computes (``tests/test_warm.py``;
``tests/test_e2e.py`` compares a warm and a cold evaluate byte for byte). ``MM_WARM=0`` turns warm
starts off. They are never used under torchrun (``LOCAL_RANK`` set), on a machine with an NVIDIA
device (CUDA must not be initialised before a fork, and next to GPU training the imports are
noise), or off Linux (and Linux before 5.3). If no server can be reached, the command runs in its
own process as before.

This file imports only the standard library: the server runs it as a script, outside the package.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

COMMANDS = frozenset({"stage1", "stage2", "evaluate"})
PRELOAD = ("torch", "transformers", "transformers.models.t5.modeling_t5", "pydantic", "jsonschema", "yaml", "tqdm")
_VOLATILE_ENV = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "DVC_STAGE"})  # per shell or stage; read by no import
_CHILD_FLAG = "_MM_WARM_CHILD"
_START_TIMEOUT_S = 120.0
_SERVER_NAME = "__mm_warm_server__"


def enabled(env=os.environ) -> bool:
    return (sys.platform.startswith("linux") and env.get("MM_WARM", "1") != "0" and "LOCAL_RANK" not in env
            and _CHILD_FLAG not in env and hasattr(socket, "send_fds") and not os.path.exists("/dev/nvidiactl")
            and _has_pidfds())


def _has_pidfds() -> bool:
    """Whether this kernel (5.3+) and sandbox allow ``pidfd_open``, which the server waits on."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def _preload(env) -> tuple[str, ...]:
    names = env.get("MM_WARM_PRELOAD")
    return tuple(n for n in names.split(",") if n) if names is not None else PRELOAD


# --------------------------------------------------------------------------- where the server is
def _key(env) -> str:
    h = hashlib.sha256()
    for part in (sys.executable, sys.version, json.dumps(sys.path[1:]),
                 json.dumps(sorted((k, v) for k, v in env.items() if k not in _VOLATILE_ENV))):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    h.update(Path(__file__).read_bytes())
    for name in sorted({n.partition(".")[0] for n in _preload(env)}):
        spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            st = os.stat(spec.origin)
            h.update(f"{name}:{spec.origin}:{st.st_mtime_ns}:{st.st_size}\0".encode())
    return h.hexdigest()[:20]


def _socket_dir(env) -> Path:
    """``mindsmirror-warm-<uid>`` in ``$XDG_RUNTIME_DIR`` (else ``/tmp``): private to this user."""
    for base in (env.get("XDG_RUNTIME_DIR"), "/tmp"):
        # a Unix socket's path has at most 107 bytes: leave room for the name
        if base and os.access(base, os.W_OK) and len(base) <= 48:
            break
    else:
        raise OSError("no writable runtime directory with a short enough path")
    d = Path(base) / f"mindsmirror-warm-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{d}: not a private directory of this user")
    return d


# --------------------------------------------------------------------------- messages
def _send(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode("utf-8", "surrogateescape")
    sock.sendall(struct.pack("!I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def _recv(sock: socket.socket) -> dict:
    (n,) = struct.unpack("!I", _recv_exact(sock, 4))
    return json.loads(_recv_exact(sock, n).decode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------- the command's side
def run(argv: list[str], module: str = "pipeline") -> Optional[int]:
    """Run ``python -m <module> <argv>`` as a child of the warm server, with this process's
    descriptors, directory and environment; its exit status, or None if no server could be reached
    (nothing has run then)."""
    env = dict(os.environ)
    try:
        sock = _connect(env)
    except OSError:
        return None
    with sock:
        try:
            socket.send_fds(sock, [b"\0"], [0, 1, 2])
            umask = os.umask(0o022)
            os.umask(umask)
            _send(sock, {"module": module, "argv": list(argv), "cwd": os.getcwd(), "env": env,
                         "path0": sys.path[0] if sys.path else os.getcwd(), "umask": umask,
                         "cpus": sorted(os.sched_getaffinity(0))})
            pid = _recv(sock)["pid"]
        except (OSError, ValueError, KeyError):
            return None
        forward = _forward_signals(pid)
        try:
            status = _recv(sock)["status"]
        except (OSError, ValueError, KeyError):
            print("error: warm start: the server went away while the command ran", file=sys.stderr)
            return 1
        finally:
            for sig, old in forward.items():
                signal.signal(sig, old)
    if status < 0:  # killed by a signal: die the same way
        sys.stdout.flush()
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


def _forward_signals(pid: int) -> dict:
    def forward(sig, _frame):
        try:
            os.killpg(pid, sig)  # the child leads its own session (and process group)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    return {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


def _dial(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _connect(env) -> socket.socket:
    import fcntl

    d = _socket_dir(env)
    key = _key(env)
    path = d / f"{key}.sock"
    try:
        return _dial(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    with open(d / f"{key}.lock", "w") as lock:  # one starter per key
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _dial(path)
        except (FileNotFoundError, ConnectionRefusedError):
            path.unlink(missing_ok=True)
        log_path = d / f"{key}.log"  # one line per command, kept across servers of this key (up to 1 MB)
        with open(log_path, "a" if log_path.exists() and log_path.stat().st_size < 2**20 else "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-c", "import sys, runpy; del sys.path[0]; "
                 f"runpy.run_path(sys.argv[1], run_name={_SERVER_NAME!r})", __file__, str(path)],
                cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        _tidy(d)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:  # the server binds before it imports, so this is quick
            try:
                return _dial(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise OSError(f"warm start: the server did not start (see {log_path})") from None
                time.sleep(0.02)


def _tidy(d: Path, days: float = 7) -> None:
    """Remove the lock and log files of keys that have had no server for ``days``."""
    cutoff = time.time() - days * 86400
    for f in list(d.glob("*.lock")) + list(d.glob("*.log")):
        try:
            if not f.with_suffix(".sock").exists() and f.stat().st_mtime < cutoff:
                f.unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------- the server's side
def serve(path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    inode = os.stat(path).st_ino  # unlinked at exit unless another server has taken the name since
    for name in _preload(os.environ):
        try:
            importlib.import_module(name)
        except Exception as e:  # the child's own import will fail the same way, with the command's stderr
            print(f"preload {name}: {type(e).__name__}: {e}", flush=True)
    # Forking is safe here: the server runs no torch op (so no OpenMP pool and no CUDA), and the
    # only threads its imports start are numpy's and scipy's OpenBLAS pools, idle, which OpenBLAS
    # shuts down and restarts around a fork with its own pthread_atfork handlers.
    print(f"serving {path} (pid {os.getpid()})", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    idle_s = float(os.environ.get("MM_WARM_IDLE", "60"))
    running: dict[int, tuple[int, Optional[socket.socket]]] = {}  # pidfd -> (pid, connection)
    last = time.monotonic()
    try:
        while running or time.monotonic() - last < idle_s:
            for key, _ in sel.select(timeout=0.5):
                if key.data is None:
                    _accept(listener, sel, running)
                elif key.data[0] == "child":
                    _reap(key.data[1], sel, running)
                    last = time.monotonic()
                else:  # the command's connection is readable: it went away, so stop its child
                    pidfd = key.data[1]
                    pid, conn = running[pidfd]
                    sel.unregister(conn)
                    conn.close()
                    running[pidfd] = (pid, None)
                    try:
                        os.killpg(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
    finally:
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except OSError:
            pass
        listener.close()
    print("idle: exiting", flush=True)


def _accept(listener: socket.socket, sel: selectors.BaseSelector, running: dict) -> None:
    conn, _ = listener.accept()
    conn.settimeout(30)
    fds: list[int] = []
    try:
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        req = _recv(conn)
        if len(fds) != 3:
            raise ValueError(f"expected 3 descriptors, got {len(fds)}")
        pid = os.fork()
        if pid == 0:
            _child(req, fds, [listener, conn, sel, *running, *(c for _, c in running.values() if c)])  # never returns
        pidfd = os.pidfd_open(pid)
        running[pidfd] = (pid, conn)
        sel.register(pidfd, selectors.EVENT_READ, ("child", pidfd))
        _send(conn, {"pid": pid})
        print(f"{pid}: {req['module']} {' '.join(req['argv'])} (in {req['cwd']})", flush=True)
        conn.settimeout(None)
        sel.register(conn, selectors.EVENT_READ, ("command", pidfd))
    except Exception as e:
        print(f"request failed: {type(e).__name__}: {e}", flush=True)
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _reap(pidfd: int, sel, running: dict) -> None:
    pid, conn = running.pop(pidfd)
    sel.unregister(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    if conn is not None:
        sel.unregister(conn)
        try:
            _send(conn, {"status": os.waitstatus_to_exitcode(status)})
        except OSError:
            pass
        conn.close()


def _child(req: dict, fds: list[int], server_files: list) -> None:
    """The forked child: become the command (its descriptors, directory, environment) and run it."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for f in server_files:  # the server's socket, selector, other commands' connections and pidfds
            os.close(f) if isinstance(f, int) else f.close()
        os.chdir(req["cwd"])
        os.umask(req["umask"])
        os.sched_setaffinity(0, req["cpus"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ[_CHILD_FLAG] = "1"
        _fresh_stdio()
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        sys.path.insert(0, req["path0"])
        sys.argv = ["-m", *req["argv"]]
        importlib.invalidate_caches()
        import runpy

        try:
            runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()  # what a fresh interpreter runs at exit (tqdm, torch, ...)
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code & 0xFF)


def _fresh_stdio() -> None:
    """``sys.stdin/stdout/stderr`` on the command's descriptors, buffered as a fresh interpreter would
    buffer them (stdout line-buffered on a terminal, stderr always, both write-through under
    PYTHONUNBUFFERED)."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    old = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
    streams = []
    for fd, was in enumerate(old):
        mode = "rb" if fd == 0 else "wb"
        raw = io.FileIO(fd, mode, closefd=False)
        encoding = getattr(was, "encoding", None) or "utf-8"
        errors = getattr(was, "errors", None) or ("backslashreplace" if fd == 2 else "strict")
        if fd == 0:
            streams.append(io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors))
        else:
            streams.append(io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                                            line_buffering=fd == 2 or raw.isatty(), write_through=unbuffered))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


if __name__ == _SERVER_NAME:
    serve(sys.argv[2])
