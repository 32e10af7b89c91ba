"""The paper's configuration, end to end, through the code path a researcher with the Hub, a GPU and
an API key runs, on local stand-ins: `dvc repro` of ``profiles/paper-local.yaml``, which is
``profiles/paper.yaml`` with only locations and sizes changed (``tests/test_profiles.py``):

- the datasets are local directories in the Hub datasets' own layout and columns (``ChilleD/SVAMP``
  split by the DSS manifest, ``tau/commonsense_qa``, ``facebook/anli``), read by the same
  ``datasets.load_dataset`` call that reads the Hub;
- the student is a t5-v1_1 checkpoint in the original Hub layout (own ``lm_head``,
  ``tie_word_embeddings: false``), random weights of a shrunk shape, loaded by ``from_pretrained``;
- both teachers are the live ``openai`` backend with the real ``prompts/``, each against its own
  OpenAI-compatible HTTP server on 127.0.0.1 (``tests/fake_openai.py``): ``luna`` where
  OPENAI_BASE_URL points, with OPENAI_API_KEY; ``qwen`` at its own ``base_url``, with VLLM_API_KEY;
- the main table (all six methods on the three datasets), the teachers table, the students of both
  teachers and the teachers' self-evaluations judged (the other tables add only more cells of the
  same stages: tests/test_runs.py and tests/test_e2e.py cover them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fake_openai import FakeOpenAI
from support.e2e import copy_project, ran_stages

pytestmark = pytest.mark.e2e
KEY = "sk-paper-path-0123456789abcdefghijklmnop"
QWEN_KEY = "vllm-local-key-9876543210zyxwvutsrq"  # the open-weights server's key, in VLLM_API_KEY
TABLES = ("main", "teachers", "by_teacher", "teacher_judges")
METHODS = ("standard_ft", "standard_kd", "cot1", "cot1_se", "cot5", "cot5_se")


def _run(cmd, proj, base_url=None, timeout=1500):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OPENAI_API_KEY=KEY,
               VLLM_API_KEY=QWEN_KEY,
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "OPENAI_BASE_URL"):
        env.pop(k, None)
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    r = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def test_the_paper_profile_runs_end_to_end_on_local_stand_ins(tmp_path):
    proj = copy_project(tmp_path)
    _run(["git", "init", "-q"], proj)
    _run([sys.executable, "scripts/make_local_hub.py", "--out", "local_hub", "--shared", "../shared"], proj)
    _run([sys.executable, "-m", "pipeline", "use-profile", "paper-local"], proj)
    yaml = YAML()
    doc = yaml.load((proj / "params.yaml").read_text())
    for t in list(doc["tables"]):
        if t not in TABLES:
            del doc["tables"][t]
    served = {t: [doc["teachers"][t]["model"], "other-model"] for t in ("luna", "qwen")}  # each lists its own model
    qwen_srv = FakeOpenAI(served_models=served["qwen"]).start()  # its port goes into params, like `vllm serve --port`
    doc["teachers"]["qwen"]["base_url"] = qwen_srv.base_url
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(doc, f)
    _run([sys.executable, "-m", "pipeline", "plan"], proj)
    params = YAML(typ="safe").load((proj / "params.yaml").read_text())
    datasets = params["tables"]["main"]["values"]["dataset"]
    assert set(datasets) == {"svamp", "cqa", "anli1"} and tuple(params["tables"]["main"]["values"]["method"]) == METHODS
    runs = YAML(typ="safe").load((proj / "runs.yaml").read_text())["runs"]
    assert len(runs) == len(datasets) * len(METHODS) + len(params["tables"]["by_teacher"]["values"]["method"])

    try:
        with FakeOpenAI(served_models=served["luna"]) as srv:
            t0 = time.perf_counter()
            out = _run(["dvc", "repro"], proj, srv.base_url)
            wall = time.perf_counter() - t0
            sent = srv.stats.requests
    finally:
        qwen_srv.stop()
    stages = ran_stages(out.stdout)
    print(f"\npaper-path dvc repro: {len(stages)} stages in {wall:.0f} s, {sent} + {qwen_srv.stats.requests} "
          "teacher requests (luna + qwen)")

    # every method on every dataset, two-stage runs through their stage-1 checkpoint; each teacher once
    # per dataset, each on its own endpoint with its own key and model
    for d in datasets:
        assert {f"teach@{d}-luna", f"teach@{d}-qwen", f"compare@{d}"} <= set(stages), d
    assert srv.stats.auth == {f"Bearer {KEY}"} and qwen_srv.stats.auth == {f"Bearer {QWEN_KEY}"}
    assert srv.stats.models == {params["teachers"]["luna"]["model"]}
    assert qwen_srv.stats.models == {params["teachers"]["qwen"]["model"]} and qwen_srv.stats.requests > 0
    qwen_runs = [n for n, r in runs.items() if r["teacher"] == "qwen"]
    assert len(qwen_runs) == len(params["tables"]["by_teacher"]["values"]["method"])
    for name, r in runs.items():
        assert stages.index(f"stage2@{name}") < stages.index(f"evaluate@{name}"), name
        if r["self_evals"]:
            assert stages.index(f"stage1@{name}") < stages.index(f"stage2@{name}"), name
    assert stages[-1] == "report" and sent > 0

    # the data came through datasets.load_dataset, SVAMP split by the DSS manifest
    prep = json.loads((proj / "metrics/prepare/svamp.json").read_text())
    assert prep["manifest_loaded_rows"] == {"train": 700, "test": 300} and prep["source_rows"] == {"train": 800, "test": 200}
    # the teacher is the live backend with the real prompts: k CoTs, m self-evaluations each
    for d in datasets:
        for t in ("luna", "qwen"):
            k = params["teachers"][t]["cots"]
            teach = json.loads((proj / f"metrics/teach/{d}/{t}.json").read_text())
            tr = teach["splits"]["train"]
            assert tr["questions"] == params["datasets"][d]["limit"]["train"] and tr["cots"] == k * tr["questions"], d
            assert tr["evaluations"] > 0 and teach["verdicts"]["agreement"] is not None, (d, t)
            assert teach["usage"]["model"] == params["teachers"][t]["model"], (d, t)
            assert teach["usage"]["model_check"] == "listed", (d, t)  # checked against the endpoint's model list
            assert teach["usage"]["snapshots"][0]["system_fingerprint"], (d, t)
        compared = json.loads((proj / f"metrics/teachers/{d}.json").read_text())
        assert set(compared["teachers"]) == {"luna", "qwen"} and compared["questions"] > 0, d

    # the student came from the Hub-layout checkpoint through from_pretrained, untied and unscaled
    hub_student = json.loads((proj / params["students"]["base"]["id"] / "config.json").read_text())
    assert hub_student["tie_word_embeddings"] is False
    for name, r in runs.items():
        final = proj / "models" / name / "stage2"
        log = json.loads((proj / "metrics/train" / name / "stage2.json").read_text())
        assert log["init"] == (str(Path("models") / name / "stage1") if r["self_evals"] else "base")
        assert json.loads((final / "config.json").read_text())["scale_decoder_outputs"] is False
        ev = json.loads((proj / f"metrics/evaluate/{name}.json").read_text())
        assert ev["total"] == params["datasets"][r["dataset"]]["limit"]["test"] and log["selected"] is not None, name
        if r["self_evals"]:
            stage1 = json.loads((proj / "metrics/train" / name / "stage1.json").read_text())
            assert stage1["verdict_agreement"] is not None, name
    report = (proj / "reports/tables/main.md").read_text()
    for meth in METHODS:
        assert f"| {meth} |" in report
    head = json.loads((proj / "metrics/headline.json").read_text())
    assert set(head) == set(TABLES)
    assert all(head["teachers"][f"{t}/{d} teacher_accuracy"] is not None for t in ("luna", "qwen") for d in datasets)
    assert all(v is not None for v in head["by_teacher"].values())

    # the keys reached their servers and no file
    leaks = [str(p) for p in proj.rglob("*") if p.is_file() and (KEY.encode() in p.read_bytes()
                                                                  or QWEN_KEY.encode() in p.read_bytes())]
    assert not leaks, leaks

    # a second repro re-runs nothing and sends nothing (the open-weights server is back on its port)
    with FakeOpenAI() as srv2, FakeOpenAI(port=qwen_srv.port) as qwen2:
        again = _run(["dvc", "repro"], proj, srv2.base_url)
        assert ran_stages(again.stdout) == [] and srv2.stats.requests == 0 and qwen2.stats.requests == 0
