"""End to end: the real `dvc repro` of the offline profile in a temporary copy of the project, on
tiny settings; then a no-op second repro, and `dvc exp run -S train.lr=...` re-running only the
training, evaluation and report stages; then code changes (the SVAMP scorer, the training loop)
re-running exactly the stages that run that code."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from support.deps import covers, load_stages
from support.e2e import copy_project, ran_stages, sh

pytestmark = pytest.mark.e2e


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
    _FLOW_DONE.add(proj)


_FLOW_DONE: set = set()  # projects whose repro/experiment flow above completed


def stage_names(proj: Path) -> set[str]:
    return set(sh(["dvc", "stage", "list", "--name-only"], proj).stdout.split())


def changed_stages(proj: Path) -> set[str]:
    return set(json.loads(sh(["dvc", "status", "--json"], proj).stdout or "{}"))


def stages_whose_deps_cover(proj: Path, path: str) -> set[str]:
    """The stages (foreach/matrix expanded) whose dvc.yaml deps list ``path`` or a folder above it."""
    templates = {name for name, st in load_stages(proj).items() if any(covers(d.rstrip("/"), path) for d in st["deps"])}
    return {s for s in stage_names(proj) if s.split("@")[0] in templates}


def _reachable(proj: Path, stages: set[str], forward: bool) -> set[str]:
    """The stages reached from ``stages`` along `dvc dag` edges, forward (readers of their outputs)
    or backward (the stages whose outputs they read), ``stages`` themselves excluded."""
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', sh(["dvc", "dag", "--dot"], proj).stdout)
    if not forward:
        edges = [(b, a) for a, b in edges]
    out, todo = set(), list(stages)
    while todo:
        s = todo.pop()
        for a, b in edges:
            if a == s and b not in out:
                out.add(b)
                todo.append(b)
    return out - set(stages)


def downstream(proj: Path, stages: set[str]) -> set[str]:
    """The stages that read, directly or not, an output of ``stages``."""
    return _reachable(proj, stages, forward=True)


def upstream(proj: Path, stages: set[str]) -> set[str]:
    """The stages whose outputs ``stages`` read, directly or not."""
    return _reachable(proj, stages, forward=False)


def make_svamp_always_correct(path: Path) -> None:
    """Insert ``return True`` at the top of ``SVAMP.is_correct``, wherever it sits in the file."""
    import ast

    src = path.read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "SVAMP")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "is_correct")
    lines = src.splitlines(keepends=True)
    first = fn.body[0]
    lines.insert(first.lineno - 1, " " * first.col_offset + "return True  # e2e probe: every prediction is correct\n")
    path.write_text("".join(lines))


def test_code_changes_rerun_exactly_the_stages_that_run_it(project):
    """dvc.yaml's code deps at work (tests/test_deps.py checks them statically): a training-code
    change never re-runs the teacher, and a scorer change makes every stage that runs the scorer
    stale, and re-scores every SVAMP student."""
    proj = project
    if proj not in _FLOW_DONE:
        pytest.skip("the repro/experiment flow above did not complete")
    assert changed_stages(proj) == set()  # the workspace holds the last experiment's results
    names = stage_names(proj)

    # the training loop: a comment line re-runs training and evaluation, never prepare or the teacher
    with open(proj / "pipeline/student/loop.py", "a") as f:
        f.write("\n# e2e probe: a training-code change\n")
    training = stages_whose_deps_cover(proj, "pipeline/student/loop.py")
    assert changed_stages(proj) == training
    out = sh(["dvc", "repro"], proj).stdout
    ran = set(ran_stages(out))
    print("training-code probe re-ran:", sorted(ran))
    # the stages that run the loop, and (where their checkpoints changed) the ones reading them
    assert training <= ran <= training | downstream(proj, training), out
    assert not any(s.startswith(("prepare@", "teach@", "assemble")) for s in ran), ran
    for kind in ("train", "pretrain_se", "train_se"):
        every = {s for s in names if s.startswith(f"{kind}@")}
        assert every and every <= ran, (kind, every - ran)
    evals = {s for s in names if s.startswith(("evaluate@", "evaluate_se@"))}
    assert evals & training <= ran  # those that import the loop; the rest re-run if their model changed
    assert ("report" in ran) == bool(evals & ran)
    assert changed_stages(proj) == set()

    # the scorer: SVAMP's is_correct now says yes to everything. `dvc status` says exactly which
    # stages a `dvc repro` would re-run; re-running the SVAMP evaluations (and the stale stages they
    # read) re-scores every SVAMP student with the new scorer
    make_svamp_always_correct(proj / "pipeline/tasks/svamp.py")
    scorer = stages_whose_deps_cover(proj, "pipeline/tasks/svamp.py")
    assert changed_stages(proj) == scorer
    svamp_evals = {s for s in names if re.match(r"evaluate(_se)?@svamp-", s)}
    assert len(svamp_evals) == len(ONE_STAGE + TWO_STAGE) and svamp_evals <= scorer
    student = {f"pipeline/student/{f.name}" for f in (proj / "pipeline/student").glob("*.py")}
    assert not set().union(*(stages_whose_deps_cover(proj, f) for f in student)) - scorer
    want = (svamp_evals | upstream(proj, svamp_evals)) & scorer
    out = sh(["dvc", "repro", *sorted(svamp_evals)], proj).stdout
    ran = set(ran_stages(out))
    print("scorer probe re-ran:", sorted(ran))
    assert ran == want, out
    assert {"prepare@svamp", "teach@svamp"} <= ran
    for m in ONE_STAGE + TWO_STAGE:
        ev = json.loads((proj / f"metrics/evaluate/svamp/{m}.json").read_text())
        assert ev["accuracy"] == 1.0 and ev["correct"] == ev["total"] == 24, (m, ev)
    # what is left stale: the other datasets' stages that run the scorer, and the report
    assert changed_stages(proj) == (scorer - ran) | {"report"}
