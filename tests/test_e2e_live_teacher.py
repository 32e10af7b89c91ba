"""`dvc repro` with the live teacher: the teach stage asks a real OpenAI-compatible HTTP server on
127.0.0.1 (tests/fake_openai.py) for k CoTs and k x m self-evaluations, and the self-evaluation
methods' assemble/train stages consume them. The API key never reaches a file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fake_openai import FakeOpenAI
from support.e2e import copy_project, ran_stages

pytestmark = pytest.mark.e2e
SENTINEL = "sk-sentinel-e2e-0123456789abcdefghijklmnop"


RUN, ASM = "svamp-live-cot5_se-base-teacher-k2-m2-s42", "svamp-live-teacher-k2-m2"


def _setup(base: Path) -> Path:
    proj = copy_project(base)
    yaml = YAML()
    p = yaml.load((proj / "profiles/offline.yaml").read_text())
    svamp = p["datasets"]["svamp"]
    svamp["limit"] = {"train": 12, "valid": 4, "test": 4}
    p["teachers"] = {"live": {"backend": "openai", "model": "fake-gpt", "cots": 2, "self_evals": 2, "temperature": 0.7,
                              "max_tokens": 256, "splits": ["train", "valid", "test"],
                              "self_eval_splits": ["train", "valid"], "concurrency": 8, "timeout_s": 10.0,
                              "max_retries": 2, "budget_usd": 5.0, "journal": "data/teacher_journal.sqlite"}}
    svamp["teacher"], svamp["teachers"] = "live", {"live": {}}
    p["datasets"] = {"svamp": svamp}
    p["methods"]["cot5_se"]["cots"] = 2
    p["methods"]["cot5_se"]["self_evals"] = 2
    p["tables"] = {"main": {"title": "live teacher", "rows": "method", "cols": "dataset",
                            "values": {"method": ["cot1", "cot5_se"], "dataset": ["svamp"]}, "fixed": {"student": "base"}}}
    p["train"]["max_steps"] = 2
    p["evaluate"]["limit"] = 4
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    subprocess.run([sys.executable, "-m", "pipeline", "plan"], cwd=proj, check=True, capture_output=True)
    return proj


def _run(cmd, proj, base_url):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false", OPENAI_API_KEY=SENTINEL, OPENAI_BASE_URL=base_url,
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    r = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_dvc_repro_with_a_live_teacher(tmp_path):
    proj = _setup(tmp_path)
    with FakeOpenAI(latency=0.01) as srv:
        subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
        out = _run(["dvc", "repro"], proj, srv.base_url)
        stages = ran_stages(out.stdout)
        for s in ("teach@svamp-live", "compare@svamp", f"assemble@{ASM}", f"stage1@{RUN}", f"stage2@{RUN}", f"evaluate@{RUN}", "report"):
            assert s in stages
        sent = srv.stats.requests

        # k CoTs for every train and test question, m self-evaluations of every parseable train CoT
        recs = {s: [json.loads(line) for line in (proj / f"data/teacher/svamp/live/{s}.jsonl").read_text().splitlines()]
                for s in ("train", "valid", "test")}
        assert len(recs["train"]) == 12 and all(len(r["cots"]) == 2 for r in recs["train"] + recs["test"])
        ok_cots = [c for r in recs["train"] for c in r["cots"] if c["status"] == "ok"]
        assert len(ok_cots) >= 20 and all(len(c["evaluations"]) == 2 for c in ok_cots)
        assert all(len(r["cots"]) == 2 for r in recs["valid"])
        assert all(len(c["evaluations"]) == 2 for r in recs["valid"] for c in r["cots"] if c["status"] == "ok")
        teach = json.loads((proj / "metrics/teach/svamp/live.json").read_text())
        assert teach["backend"] == "openai" and teach["splits"]["train"]["evaluations"] == 2 * len(ok_cots)
        assert teach["splits"]["test"]["accuracy"] is not None

        # ... consumed by the self-evaluation method: stage 1 trained on them
        asm = json.loads((proj / f"metrics/assemble/{ASM}.json").read_text())
        verdicts = sum(1 for c in ok_cots for e in c["evaluations"] if e["verdict"])
        assert asm["stage1_rows"] == verdicts > 0 and asm["stage1_valid_rows"] > 0
        log = json.loads((proj / f"metrics/train/{RUN}/stage1.json").read_text())
        assert log["rows"] == verdicts and log["steps"] >= 1

        # nothing is re-sent and nothing re-runs on a second repro
        again = _run(["dvc", "repro"], proj, srv.base_url)
        assert ran_stages(again.stdout) == [] and srv.stats.requests == sent
        assert all(SENTINEL in a for a in srv.stats.auth)  # the key was really used ...

    # ... and never written anywhere: params, dvc.lock, metrics, data, the journal, MLflow, logs
    leaks = [str(p) for p in proj.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert leaks == []
    assert SENTINEL not in out.stdout + out.stderr + again.stdout + again.stderr
