"""End to end: the real `dvc repro` of the offline profile in a temporary copy of the project, on
tiny settings; then a no-op second repro, and `dvc exp run -S train.lr=...` re-running only the
training, evaluation and report stages."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

pytestmark = pytest.mark.e2e


def _env(proj: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", PYTHONUNBUFFERED="1")
    for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(k, None)
    return env


def sh(cmd: list[str], proj: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r


def ran_stages(out: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out)


def tiny_params(path: Path) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    p = yaml.load(path.read_text())
    # svamp keeps all 700 train questions (the tree dump's two sit at rows 356 and 679) and its
    # validation split (one tree-dump question is there): the step cap keeps training short
    p["datasets"]["cqa"]["limit"] = {"train": 24, "valid": 8}
    p["train"]["max_steps"] = 3
    p["train"]["select_max_new_tokens"] = 8
    p["evaluate"]["limit"] = 24
    p["evaluate"]["rationale_max_new_tokens"] = 8
    with open(path, "w") as f:
        yaml.dump(p, f)


def copy_project(base: Path) -> Path:
    """The project's files (tracked or not ignored, no generated results) in ``base/proj``, with
    ``base/shared`` pointing at the shared data, as in a fresh clone."""
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the tests read the shared data in place")
    proj = base / "proj"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() and not f.startswith(("metrics/", "reports/results", "dvc.lock", "tests/")):
            (proj / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, proj / f)
    os.symlink(SHARED, base / "shared")
    return proj


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("e2e"))
    sh(["git", "init", "-q"], proj)
    sh([sys.executable, "-m", "pipeline", "use-profile", "offline"], proj)
    tiny_params(proj / "params.yaml")
    return proj


ONE_STAGE = ("standard_ft", "standard_kd", "cot1", "cot5")
TWO_STAGE = ("cot1_se", "cot5_se")


def test_repro_then_noop_then_experiments(project):
    proj = project
    first = sh(["dvc", "repro"], proj)
    stages = ran_stages(first.stdout)
    assert "report" in stages and "teach@anli1" in stages and "teach@svamp_dss" in stages
    assert {f"train@{d}-{m}" for d in ("svamp", "cqa") for m in ONE_STAGE} <= set(stages)
    for m in TWO_STAGE:  # stage 2 after stage 1, through the checkpoint edge
        assert stages.index(f"pretrain_se@svamp-{m}") < stages.index(f"train_se@svamp-{m}")

    # teacher accuracy on the recorded PaLM outputs, as the reference code parses them
    teach = {d: json.loads((proj / f"metrics/teach/{d}.json").read_text()) for d in ("svamp_dss", "cqa", "anli1", "svamp")}
    assert (teach["svamp_dss"]["splits"]["test"]["correct"], teach["svamp_dss"]["splits"]["test"]["questions"]) == (148, 200)
    assert (teach["cqa"]["splits"]["test"]["correct"], teach["cqa"]["splits"]["test"]["questions"]) == (943, 1221)
    assert teach["anli1"]["splits"]["valid"]["accuracy"] == pytest.approx(0.668)
    # the MCC-KD CoTs (10 per question) and the tree dump's 2 x 5 x 5 self-evaluations
    tr = teach["svamp"]["splits"]["train"]
    assert tr["questions"] == 700 and tr["cots"] == 7010 and tr["evaluations"] == 50

    # the assembled data of the self-evaluation method: 2 questions x 5 CoTs x 5 evaluations
    asm = json.loads((proj / "metrics/assemble/svamp/cot5_se.json").read_text())
    assert asm["stage1_rows"] == 50 and asm["stage1_valid_rows"] == 25 and asm["stage2_rows"] > 3000

    # artifacts and results table: all six methods on SVAMP, both selection protocols
    results = (proj / "reports/results.md").read_text()
    assert "Selected on the validation split" in results and "official code's protocol" in results
    for m in ONE_STAGE + TWO_STAGE:
        assert f"| {m} |" in results
    csv = (proj / "reports/results.csv").read_text().splitlines()
    assert csv[0].startswith("method,labels,cots,self_eval,svamp_selected_on_valid,svamp_paper_protocol")
    assert len(csv) == 1 + 6 + 1
    row = dict(zip(csv[0].split(","), next(line for line in csv if line.startswith("cot5_se,")).split(",")))
    assert row["svamp_selected_on_valid"] != "" and row["svamp_paper_protocol"] != ""
    ev = json.loads((proj / "metrics/evaluate/svamp/cot5_se.json").read_text())
    assert ev["total"] == 24 and ev["paper_protocol_accuracy"] is not None and ev["mlflow_run_id"]
    assert ev["stage1_verdict_agreement"] is not None
    preds = (proj / "results/svamp/cot5_se/predictions.jsonl").read_text().splitlines()
    assert len(preds) == 24 and "rationale" in json.loads(preds[0])

    # MLflow: one run per train+evaluate, with params, step losses and tags
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mindsmirror")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2 * len(ONE_STAGE) + len(TWO_STAGE)
    run = client.get_run(ev["mlflow_run_id"])
    assert run.data.tags["dataset"] == "svamp" and run.data.tags["method"] == "cot5_se"
    assert run.data.tags["dvc_stage"] == "evaluate_se@svamp-cot5_se" and "git_commit" in run.data.tags
    assert float(run.data.params["train.lr"]) == 0.001
    assert len(client.get_metric_history(run.info.run_id, "loss")) >= 2
    assert len(client.get_metric_history(run.info.run_id, "stage1_loss")) >= 1
    assert run.data.metrics["accuracy"] == pytest.approx(ev["accuracy"])

    # a second repro re-runs nothing
    second = sh(["dvc", "repro"], proj)
    assert ran_stages(second.stdout) == [], second.stdout

    # an experiment on the learning rate re-runs only the training stages, evaluation and report
    sh(["git", "add", "-A"], proj)
    sh(["git", "commit", "-qm", "baseline"], proj)
    exp_run = sh(["dvc", "exp", "run", "-S", "train.lr=0.002"], proj)
    stages = ran_stages(exp_run.stdout)
    assert {s.split("@")[0] for s in stages} == {"train", "pretrain_se", "train_se", "evaluate", "evaluate_se", "report"}, stages
    assert len([s for s in stages if s.startswith("train@")]) == 2 * len(ONE_STAGE)

    # fewer CoTs for one method: only that method's assembly, training and evaluation re-run
    # (CQA has one PaLM CoT per question, so its assembled rows, and everything after, do not change)
    exp_run = sh(["dvc", "exp", "run", "-S", "methods.cot5.cots=3"], proj)
    # (evaluate@cqa-cot5 re-runs: it reads `cots` to decide whether to generate rationales)
    assert set(ran_stages(exp_run.stdout)) == {"assemble@svamp-cot5", "assemble@cqa-cot5", "train@svamp-cot5",
                                              "evaluate@svamp-cot5", "evaluate@cqa-cot5", "report"}, exp_run.stdout

    # fewer self-evaluations: the two-stage method's stage 1 and everything after it
    exp_run = sh(["dvc", "exp", "run", "-S", "methods.cot5_se.self_eval=3"], proj)
    assert set(ran_stages(exp_run.stdout)) == {"assemble_se@svamp-cot5_se", "pretrain_se@svamp-cot5_se",
                                              "train_se@svamp-cot5_se", "evaluate_se@svamp-cot5_se", "report"}, exp_run.stdout
    asm = json.loads((proj / "metrics/assemble/svamp/cot5_se.json").read_text())
    assert asm["stage1_rows"] == 2 * 5 * 3
