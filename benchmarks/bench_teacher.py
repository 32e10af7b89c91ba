"""Throughput of the live teacher's sender against the local fake endpoint (tests/fake_openai.py).

1. Requests/s at concurrency 1, 8, 32, 64 against a server with a fixed latency (200 ms): each level
   sends about ``--seconds`` worth of one-sample requests through the real sender (openai client,
   rate limiter, one journal commit per response); ideal = concurrency / latency.
2. A fully cached rerun of the teach stage's ``generate`` on real SVAMP questions (train + test,
   k CoTs and m self-evaluations each): requests sent (must be 0) and wall time.

    .venv/bin/python benchmarks/bench_teacher.py [--latency 0.2] [--seconds 4] [--levels 1,8,32,64]
    MM_TEACHER_HTTP=httpx .venv/bin/python benchmarks/bench_teacher.py   # the SDK's default transport

Loopback only; both servers are started and stopped by the script.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

from pipeline.core.records import Example  # noqa: E402
from pipeline.core.spec import OpenAITeacher  # noqa: E402
from pipeline.tasks import get_task  # noqa: E402
from pipeline.teacher import openai as ob  # noqa: E402
from pipeline.teacher.journal import Journal, group_key, prompt_hash  # noqa: E402


class Server:
    """tests/fake_openai.py in its own process (so it does not share the client's interpreter)."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--port", "0",
                                      "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"fake server did not start: {line!r}")
        self.base_url = m.group(1)

    def requests(self) -> int:
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + "/stats", timeout=5) as r:
            return json.load(r)["requests"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def throughput(server: Server, journal: Journal, concurrency: int, n: int, tag: str) -> float:
    os.environ["OPENAI_BASE_URL"] = server.base_url
    teacher = OpenAITeacher(backend="openai", model="bench", concurrency=concurrency, max_tokens=64,
                            cots=1, self_evals=0, max_retries=2, timeout_s=30)
    endpoint = ob.endpoint_url(teacher)
    params = {"temperature": teacher.temperature, "max_tokens": teacher.max_tokens}
    groups = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Q: bench {tag} question {i}: 17 apples and {i} pears?\nA:"}]
        ph = prompt_hash(messages)
        groups.append(ob.Group(group_key(endpoint, teacher.model, ph, params), "cot", messages, ph, params, 1,
                               ob.message_tokens(messages, teacher.model)))
    sender = ob.Sender(teacher, journal, endpoint, "bench")
    first_id = journal.db.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]
    t0 = time.perf_counter()
    sender.run(groups, f"c={concurrency}")
    wall = time.perf_counter() - t0
    if sender.stats.requests != n or sender.stats.failed:
        raise SystemExit(f"concurrency {concurrency}: {sender.stats.requests}/{n} requests, {sender.stats.failed} failed")
    # steady state: from the concurrency-th answer to the last (leaves out start-up and ramp)
    done = [r[0] for r in journal.db.execute("SELECT created_at FROM requests WHERE id > ? ORDER BY created_at",
                                             (first_id,))]
    steady = (len(done) - concurrency) / (done[-1] - done[concurrency - 1]) if len(done) > concurrency else float("nan")
    return n / wall, steady


def svamp_examples(limit: int) -> dict[str, list[Example]]:
    task = get_task("svamp")
    from pipeline.core.spec import LocalSource
    from pipeline.sources import load

    data = ROOT.parent / "shared" / "data" / "svamp"
    src = LocalSource(kind="local", format="dss",
                      files={"train": str(data / "svamp_train.json"), "test": str(data / "svamp_test.json")})
    out = {}
    for split, rows in load(task, src).items():
        out[split] = [Example(**r, split=split, origin=split, index=i) for i, r in enumerate(rows[:limit])]
    return out


def cached_rerun(fill_server: Server, workdir: Path, k: int, m: int, limit: int) -> None:
    os.environ["OPENAI_BASE_URL"] = fill_server.base_url
    teacher = OpenAITeacher(backend="openai", model="bench", cots=k, self_evals=m, concurrency=64,
                            journal=str(workdir / "cached_journal.sqlite"))
    task = get_task("svamp")
    examples = svamp_examples(limit)
    n_q = sum(len(v) for v in examples.values())
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        t0 = time.perf_counter()
        ob.generate("svamp", task, teacher, examples)
        fill = time.perf_counter() - t0
        before = fill_server.requests()
        t0 = time.perf_counter()
        u = ob.generate("svamp", task, teacher, examples).usage
        wall = time.perf_counter() - t0
        sent = fill_server.requests() - before
    finally:
        os.chdir(cwd)
    print(f"\ncached rerun: generate() on {n_q} SVAMP questions (train + test), k={k} CoTs, m={m} self-evaluations "
          f"per train CoT = {u['samples']} samples ({u['total_requests']} requests to fill, {fill:.1f} s)")
    print(f"  requests sent: {sent} (usage.requests {u['requests']}, cached_samples {u['cached_samples']})")
    print(f"  wall time:     {wall:.2f} s")
    if sent:
        raise SystemExit("FAIL: the cached rerun sent requests")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=4.0, help="ideal duration of each level")
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--questions", type=int, default=10_000, help="SVAMP questions per split for the cached rerun")
    a = ap.parse_args(argv)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-local")
    levels = [int(x) for x in a.levels.split(",")]
    load = os.getloadavg()[0]
    server, fill = Server(a.latency), Server(0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_teacher_") as tmp:
            work = Path(tmp)
            transport = "aiohttp" if "Aio" in type(ob.http_client({})).__name__ else "httpx2"
            print(f"fake endpoint: {a.latency * 1000:.0f} ms per request; {os.cpu_count()} CPUs; client: openai "
                  f"{__import__('openai').__version__} ({transport} transport), one journal commit per response")
            print("achieved = requests / wall time of the whole run (client start-up and ramp included); "
                  "steady = from the concurrency-th answer to the last")
            print(f"{'concurrency':>11} {'requests':>8} {'ideal req/s':>11} {'achieved':>9} {'% of ideal':>10} "
                  f"{'steady':>7} {'% of ideal':>10}")
            worst = 100.0
            with Journal(work / "journal.sqlite") as journal:
                for c in levels:
                    n = max(10, round(c / a.latency * a.seconds))
                    ideal = c / a.latency
                    rate, steady = throughput(server, journal, c, n, f"c{c}")
                    pct = 100 * rate / ideal
                    worst = min(worst, pct)
                    print(f"{c:>11} {n:>8} {ideal:>11.1f} {rate:>9.1f} {pct:>9.1f}% {steady:>7.1f} "
                          f"{100 * steady / ideal:>9.1f}%", flush=True)
            print(f"lowest (whole run): {worst:.1f}% of ideal (goal >= 90%); load average at start {load:.2f} "
                  f"on {os.cpu_count()} CPUs (other work on the machine lowers these figures)")
            cached_rerun(fill, work, a.k, a.m, a.questions)
    finally:
        server.stop()
        fill.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
