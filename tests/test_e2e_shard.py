"""End to end: the runs of one profile over two workers (``python -m pipeline shard``), on this machine.

The teacher runs once in the origin project (``dvc repro teach compare``, ``dvc.lock`` and ``metrics/``
committed). A worker with no teacher outputs (nothing locked, or neither cache nor remote holding them)
gets one line and runs nothing; one whose remote holds them pulls them. Then two clones share one DVC
cache (``dvc cache dir --local``) and run their shares at the same time: ``scripts/shard.sbatch`` as a
two-task array job on a one-node SLURM cluster the test starts (``support.slurm``; as two bash
processes where SLURM cannot run, unless ``MM_REQUIRE_SLURM`` is set, as in CI). Each runs exactly its
share's stages, never ``prepare``, ``teach``, ``spec`` or ``report``.

Not here yet: the merging clone. DVC 3.67 saves no run-cache entry for a stage with a ``cache: false``
file among its ``outs`` (``run_cache=not no_cache_outs`` in ``dvc/stage/__init__.py``), and every stage
of dvc.yaml has one (its metrics JSON), so a third clone cannot restore the workers' stages from the
run-cache (see docs/sharing-and-parallel-runs.md)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, slurm
from support.e2e import copy_project, e2e_env, ran_stages, sh

pytestmark = pytest.mark.e2e

METHODS = ("standard_ft", "cot1", "cot5_se")
TEACH_FIRST = "run and push `teach` first"


def shard_params(path: Path) -> None:
    """The offline profile cut to svamp and its gpt-3.5 CoTs: three runs (no teacher, one stage, two
    stages) and one sample set (the two-stage run's vote@2 / verify@2), a few steps each."""
    from ruamel.yaml import YAML

    yaml = YAML()
    p = yaml.load(path.read_text())
    p["datasets"] = {"svamp": p["datasets"]["svamp"]}
    p["datasets"]["svamp"]["teachers"] = {"gpt35": p["datasets"]["svamp"]["teachers"]["gpt35"]}
    p["teachers"] = {"gpt35": p["teachers"]["gpt35"]}
    p["train"]["max_steps"] = 3
    p["train"]["device"] = "cpu"  # a task's CUDA_VISIBLE_DEVICES must not move one worker onto a real GPU
    p["train"]["select_max_new_tokens"] = 8
    p["evaluate"]["limit"] = 16
    p["evaluate"]["rationale_max_new_tokens"] = 8
    p["infer"] = {"max_new_tokens": 8, "rationale_max_new_tokens": 8, "batch_size": 16}
    p["tables"] = {
        "main": {"title": "main", "rows": "method", "cols": "dataset",
                 "values": {"method": list(METHODS), "dataset": ["svamp"]}, "fixed": {"student": "base"}},
        "inference": {"title": "inference", "rows": "method", "cols": "inference",
                      "values": {"method": ["cot5_se"], "inference": ["greedy", "vote@2", "verify@2"]},
                      "fixed": {"dataset": "svamp", "student": "base"}},
    }
    with open(path, "w") as f:
        yaml.dump(p, f)


def shard(proj: Path, workers: int, index: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "shard", "--workers", str(workers), "--index", str(index)],
                          cwd=proj, env=e2e_env(proj), capture_output=True, text=True, timeout=300)


def clone(origin: Path, name: str, cache: Path) -> Path:
    dest = origin.parent / name
    sh(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    sh(["dvc", "cache", "dir", "--local", str(cache)], dest)
    return dest


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), r.stderr
    return lines[0]


def test_two_workers_at_once_on_one_shared_cache(tmp_path):
    origin = copy_project(tmp_path)
    sh(["git", "init", "-q"], origin)
    sh([sys.executable, "-m", "pipeline", "use-profile", "offline"], origin)
    shard_params(origin / "params.yaml")
    sh([sys.executable, "-m", "pipeline", "plan"], origin)
    sh(["git", "add", "-A"], origin)
    sh(["git", "commit", "-qm", "profile"], origin)
    cache = tmp_path / "cache"
    sh(["dvc", "cache", "dir", "--local", str(cache)], origin)
    runs = json.loads(sh([sys.executable, "-c", "import json; from pipeline.core.spec import load_params; "
                          "from pipeline.tasks import TASKS; from pipeline.runs import Plan; "
                          "print(json.dumps(list(Plan(load_params('params.yaml', tasks=TASKS)).runs)))"], origin).stdout)
    assert len(runs) == 3

    # bad input, and a worker before the teacher ran: one line each, nothing produced
    one_line_error(shard(origin, 2, 2), "--index 2", "0..1")
    one_line_error(shard(origin, 4, 0), "--workers 4", "3 runs")
    one_line_error(shard(origin, 2, 0), TEACH_FIRST)
    assert not (origin / "dvc.lock").exists() and not (origin / "data").exists()

    # the teacher, once, committed
    sh(["dvc", "repro", "teach", "compare"], origin)
    sh(["git", "add", "dvc.lock", "metrics"], origin)
    sh(["git", "commit", "-qm", "teach"], origin)

    # a worker whose cache and remote lack the teacher outputs: one line, the teacher never called
    lonely = clone(origin, "lonely", tmp_path / "empty-cache")
    (tmp_path / "empty-remote").mkdir()
    sh(["dvc", "remote", "add", "--local", "-d", "empty", str(tmp_path / "empty-remote")], lonely)
    one_line_error(shard(lonely, 2, 0), "teach@svamp-gpt35", "would re-run", TEACH_FIRST)
    assert not (lonely / "data/teacher/svamp/gpt35").exists() and not (lonely / "data/prepared/svamp").exists()
    assert (lonely / "dvc.lock").read_text() == (origin / "dvc.lock").read_text()
    # ... and one whose remote has them: shard pulls them (its own cache, the team's remote)
    sh(["dvc", "remote", "add", "--local", "-d", "team", str(tmp_path / "remote")], origin)
    sh(["dvc", "push", "--with-deps", "teach@svamp-gpt35"], origin)
    pulled = clone(origin, "pulled", tmp_path / "pulled-cache")
    sh(["dvc", "remote", "add", "--local", "-d", "team", str(tmp_path / "remote")], pulled)
    assert shard(pulled, 2, 1).returncode == 0
    assert (pulled / "data/teacher/svamp/gpt35").is_dir() and (pulled / "data/prepared/svamp").is_dir()

    # two workers at once on one shared cache: the SLURM recipe's script as a two-task array job
    expect = [shard(origin, 2, i) for i in range(2)]  # what each worker will compute on its own
    assert [o.returncode for o in expect] == [0, 0], [o.stderr for o in expect]
    targets = [o.stdout.split() for o in expect]
    everything = {f"evaluate@{r}" for r in runs} | {f"infer@{r}-sample2" for r in runs if "-cot5_se-" in r}
    assert set(targets[0]).isdisjoint(targets[1]) and set(targets[0]) | set(targets[1]) == everything
    assert any("-cot5_se-" in t for t in targets[0]) and len(targets[1]) == 2  # LPT: the two-stage run alone
    why = slurm.available()
    if why and os.environ.get("MM_REQUIRE_SLURM"):
        pytest.fail(f"MM_REQUIRE_SLURM is set, but a SLURM cluster cannot start here: {why}")
    commit = sh(["git", "rev-parse", "HEAD"], origin).stdout.strip()
    env = {**e2e_env(origin), "MM_REPO": str(origin), "MM_COMMIT": commit, "MM_CACHE": str(cache),
           "MM_WORKDIR": str(tmp_path)}
    with contextlib.ExitStack() as stack:
        slurm_env = None if why else stack.enter_context(slurm.cluster(tmp_path / "slurm"))
        res = slurm.run_array(ROOT / "scripts" / "shard.sbatch", 2, env, tmp_path / "logs", slurm_env)
    logs = res["logs"]
    assert res["exit"] == [0, 0], [log[-3000:] for log in logs]
    if slurm_env is not None:  # both tasks were running at one moment, each with a GPU of its own (--gres=gpu:1)
        assert res["overlap"]
        assert sorted(re.search(r"CUDA_VISIBLE_DEVICES=(\S*)", log).group(1) for log in logs) == ["0", "1"]
    workers = [tmp_path / f"worker-{i}" for i in range(2)]
    assert (workers[0] / "data/teacher/svamp/gpt35").is_dir()  # restored by shard from the shared cache
    ran = [ran_stages(log) for log in logs]
    for stages, t in zip(ran, targets):
        assert not any(s.startswith(("teach@", "prepare@", "compare@", "spec", "report")) for s in stages), stages
        assert set(t) <= set(stages)
    assert set(ran[0]).isdisjoint(s for s in ran[1] if not s.startswith("assemble@"))

    for w, share in zip(workers, targets):  # each worker's results are in its clone
        for t in share:
            stage, _, name = t.partition("@")
            assert (w / "metrics" / "evaluate" / f"{name}.json").is_file(), t
