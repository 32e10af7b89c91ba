"""Start-up of a student stage process, cold against warm (pipeline/warm.py).

A student stage (stage1, stage2, evaluate) starts by importing torch and transformers' T5. This
times a probe command that does only that, ``--repeats`` times each way:

* cold: ``python -m probe``, a fresh interpreter (what every stage paid before warm starts);
* warm: ``warm.run(["..."], module="probe")`` from a fresh client interpreter, forked from the
  server (started, and its preload paid, once before the timed runs).

It prints the median and min wall time per command. Usage::

    .venv/bin/python benchmarks/bench_warm.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import warm  # noqa: E402

PROBE = "import torch\nfrom transformers import AutoTokenizer, T5ForConditionalGeneration\n"
CLIENT = "import sys; from pipeline import warm; s = warm.run([], module='probe'); sys.exit(99 if s is None else s)"


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not warm.enabled():
        sys.exit("warm starts are off here (MM_WARM=0, not Linux, or an NVIDIA device)")
    with tempfile.TemporaryDirectory(prefix="mmbw", dir="/tmp") as d:
        d = Path(d)
        (d / "probe").mkdir()
        (d / "probe" / "__main__.py").write_text(PROBE)
        (d / "run").mkdir(mode=0o700)
        env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(d / "run"), MM_WARM_IDLE="30")
        t_start = timed([sys.executable, "-c", CLIENT], d, env)  # starts the server: preload + first command
        cold = [timed([sys.executable, "-m", "probe"], d, env) for _ in range(args.repeats)]
        hot = [timed([sys.executable, "-c", CLIENT], d, env) for _ in range(args.repeats)]
        for log in (d / "run").glob("*/*.log"):
            for line in log.read_text().splitlines():
                if "(pid " in line:
                    os.kill(int(line.rsplit("(pid ", 1)[1].rstrip(")")), signal.SIGTERM)
    print(f"probe: {PROBE.strip().replace(chr(10), '; ')}")
    print(f"cold, a fresh interpreter:  median {statistics.median(cold):.2f} s, min {min(cold):.2f} s ({args.repeats} runs)")
    print(f"warm, forked from a server: median {statistics.median(hot):.2f} s, min {min(hot):.2f} s ({args.repeats} runs)")
    print(f"first warm command (starts the server, preloads {', '.join(warm.PRELOAD)}): {t_start:.2f} s")


if __name__ == "__main__":
    main()
