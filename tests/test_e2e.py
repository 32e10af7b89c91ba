"""End to end: the real `dvc repro` of the offline profile in a temporary copy of the project, with
tiny settings and three small tables (main, #CoTs as a line figure, teacher): every table and figure
rendered, MLflow runs with child runs and real durations; a no-op second repro; one k value added to
the #CoTs table runs exactly one new run's stages and the report; `dvc exp show` narrowed to the
headline; `dvc push` and `dvc pull` in a fresh clone restore every result. Then code changes (the
run planner, the training loop, the MLflow code, the SVAMP scorer) re-run exactly the stages that run
that code: never the teacher for a planner or training change, and no evaluation when retraining
gives the same bits."""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest

from support.deps import covers, load_stages
from support.e2e import copy_project, ran_stages, sh

pytestmark = pytest.mark.e2e

MAIN = ("standard_kd", "cot5", "cot5_se")
RUNS = {"svamp-gpt35-standard_kd-base-teacher-k0-m0-s42", "svamp-gpt35-cot5-base-teacher-k5-m0-s42",
        "svamp-gpt35-cot5_se-base-teacher-k5-m5-s42", "svamp-gpt35-cot5-base-teacher-k1-m0-s42"}
K3 = "svamp-gpt35-cot5-base-teacher-k3-m0-s42"
MODES2 = ("greedy", "vote@2", "verify@2", "verify@2/stage1")
SAMPLED = ("svamp-gpt35-cot5-base-teacher-k5-m0-s42", "svamp-gpt35-cot5_se-base-teacher-k5-m5-s42")


def documented_exp_show() -> list[str]:
    """The `dvc exp show` command docs/comparing-runs.md documents for an ablation (its one home)."""
    import shlex

    doc = (Path(__file__).resolve().parents[1] / "docs/comparing-runs.md").read_text()
    line = next(ln for ln in doc.splitlines() if ln.startswith("dvc exp show "))
    return shlex.split(line.split("  #")[0])


def tiny_params(path: Path) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    p = yaml.load(path.read_text())
    # svamp keeps all 700 train questions (the tree dump's two sit at rows 356 and 679) and its
    # validation split (one tree-dump question is there): the step cap keeps training short
    for d in ("svamp_dss", "anli1"):
        del p["datasets"][d]
    # two of svamp's recorded teachers (the paper's gpt-3.5-turbo and GPT-4o) and CQA's PaLM
    del p["datasets"]["svamp"]["teachers"]["gemini"]
    for t in ("gemini", "llama"):
        p["datasets"]["cqa"]["teachers"].pop(t, None)
        del p["teachers"][t]
    p["datasets"]["cqa"]["limit"] = {"train": 24, "valid": 8}
    p["train"]["max_steps"] = 3
    p["train"]["select_max_new_tokens"] = 8
    p["evaluate"]["limit"] = 24
    p["evaluate"]["rationale_max_new_tokens"] = 8
    p["infer"] = {"max_new_tokens": 8, "rationale_max_new_tokens": 8, "batch_size": 24}
    p["tables"] = {  # plain data (no comments to carry over): three small tables
        "main": {"title": "main", "paper": "main results", "rows": "method", "cols": "dataset",
                 "values": {"method": list(MAIN), "dataset": ["svamp"]}, "fixed": {"student": "base"}},
        "cots": {"title": "#CoTs", "paper": "number of CoTs", "rows": "method", "cols": "cots",
                 "values": {"method": ["cot5"], "cots": [1, 5]}, "fixed": {"dataset": "svamp", "student": "base"},
                 "show": "line"},
        "inference": {"title": "inference", "rows": "method", "cols": "inference",
                      "values": {"method": ["cot5", "cot5_se"], "inference": list(MODES2)},
                      "fixed": {"dataset": "svamp", "student": "base"}},
        "teachers": {"title": "teachers", "rows": "teacher", "cols": "dataset",
                     "values": {"teacher": ["gpt35", "gpt4o", "palm"], "dataset": ["svamp", "cqa"]},
                     "omit": [{"dataset": "svamp", "teacher": "palm"}, {"dataset": "cqa", "teacher": ["gpt35", "gpt4o"]}],
                     "metric": ["teacher_accuracy", "teacher_parse_rate"]},
    }
    with open(path, "w") as f:
        yaml.dump(p, f)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("e2e"))
    sh(["git", "init", "-q"], proj)
    sh([sys.executable, "-m", "pipeline", "use-profile", "offline"], proj)
    tiny_params(proj / "params.yaml")
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    return proj


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_tables_runs_mlflow_noop_one_new_cell_exp_show_and_remote(project, tmp_path):
    proj = project
    first = sh(["dvc", "repro"], proj)
    stages = ran_stages(first.stdout)
    assert {f"stage2@{r}" for r in RUNS} | {f"evaluate@{r}" for r in RUNS} <= set(stages)
    assert len([s for s in stages if s.startswith("stage2@")]) == len(RUNS)  # the shared k=5 cell is one run
    se = "svamp-gpt35-cot5_se-base-teacher-k5-m5-s42"
    assert stages.index(f"stage1@{se}") < stages.index(f"stage2@{se}") < stages.index(f"evaluate@{se}")
    assert stages[0] == "spec" and stages[-1] == "report"
    assert {s for s in stages if s.startswith("infer@")} == {f"infer@{r}-sample2" for r in SAMPLED}

    # the teacher: the MCC-KD CoTs (10 per question) and the tree dump's 2 x 5 x 5 self-evaluations
    tr = json.loads((proj / "metrics/teach/svamp/gpt35.json").read_text())["splits"]["train"]
    assert tr["questions"] == 700 and tr["cots"] == 7010 and tr["evaluations"] == 50
    asm = json.loads((proj / "metrics/assemble/svamp-gpt35-teacher-k5-m5.json").read_text())
    assert asm["stage1_rows"] == 50 and asm["stage1_valid_rows"] == 25 and asm["stage2_rows"] > 3000

    # every table and figure, and the headline metrics
    for t in ("main", "cots", "teachers"):
        assert (proj / f"reports/tables/{t}.md").exists() and (proj / f"reports/tables/{t}.csv").exists(), t
    assert (proj / "reports/figures/cots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = _csv(proj / "reports/figures/cots.csv")
    assert [r["cots"] for r in fig] == ["1", "5"] and "cot5" in fig[0]
    main = {(r["row"], r["col"]): r for r in _csv(proj / "reports/tables/main.csv")}
    assert set(main) == {(m, "svamp") for m in MAIN} and all(r["status"] == "ok" for r in main.values())
    head = json.loads((proj / "metrics/headline.json").read_text())
    assert set(head) == {"main", "cots", "inference", "teachers"}
    # the sampled modes: 24 questions x 2 samples; the two-stage run's two judges, the one-stage run's none ('-')
    inf = {r: json.loads((proj / f"metrics/evaluate/{r}-sample2.json").read_text()) for r in SAMPLED}
    assert [x["questions"] for x in inf.values()] == [24, 24]
    assert set(inf[SAMPLED[0]]["judges"]) == set() and set(inf[SAMPLED[1]]["judges"]) == {"final", "stage1"}
    cells = {(r["row"], r["col"]): r for r in _csv(proj / "reports/tables/inference.csv")}
    assert cells["cot5", "verify@2"]["status"] == "omitted" and cells["cot5_se", "verify@2/stage1"]["status"] == "ok"
    assert head["inference"]["cot5_se/vote@2"] == round(100 * inf[SAMPLED[1]]["vote_accuracy"], 2)
    assert head["inference"]["cot5_se/greedy"] == head["main"]["cot5_se/svamp"]
    sets = [json.loads(x) for x in (proj / f"results/samples/{SAMPLED[1]}-sample2/samples.jsonl").read_text().splitlines()]
    assert len(sets) == 24 and all(len(q["samples"]) == 2 and set(q["samples"][0]["p_correct"]) == {"final", "stage1"}
                                   for q in sets)
    # the teachers on the same questions: the 487 SVAMP train questions GPT-4o's files cover
    compared = json.loads((proj / "metrics/teachers/svamp.json").read_text())
    assert (compared["split"], compared["questions"]) == ("train", 487) and compared["teachers"]["gpt4o"]["selected_by_gold"]
    assert head["teachers"]["gpt35/svamp teacher_accuracy"] == round(100 * compared["teachers"]["gpt35"]["accuracy"], 2)
    assert head["cots"]["cot5/5"] == head["main"]["cot5/svamp"] is not None  # one run serves both cells
    ev = json.loads((proj / f"metrics/evaluate/{se}.json").read_text())
    assert ev["total"] == 24 and "selected_step" not in ev  # the selection lives in the training logs alone
    log1, log2 = (json.loads((proj / f"metrics/train/{se}/{st}.json").read_text()) for st in ("stage1", "stage2"))
    assert log2["paper_protocol_best"]["test_accuracy"] is not None and log1["verdict_agreement"] is not None
    assert not list((proj / "models").rglob("training_log.json"))  # one home: metrics/train
    assert not list((proj / ".checkpoints").glob("*"))  # no scratch left behind by finished stages
    assert head["main"]["cot5_se/svamp"] == round(100 * ev["accuracy"], 2)  # as the tables show it
    preds = (proj / f"results/{se}/predictions.jsonl").read_text().splitlines()
    assert len(preds) == 24 and "rationale" in json.loads(preds[0])

    # MLflow: one parent run per run, stage 1 / stage 2 as child runs, real durations, table tags
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mindsmirror")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_name = {r.data.tags.get("mlflow.runName"): r for r in runs}
    assert RUNS | {"report"} <= set(by_name)
    ids = json.loads((proj / "metrics/mlflow_runs.json").read_text())  # logged by the report stage, once per run
    assert set(ids) == RUNS
    parent = client.get_run(ids[se])
    assert parent.data.tags["mlflow.runName"] == se and parent.data.tags["table.main"]
    assert parent.data.tags["dvc_stage"] == f"evaluate@{se}" and parent.data.tags["logged_by"] == "report"
    assert parent.data.tags["mlflow.source.git.commit"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["mlflow.runName"] for r in children) == [f"{se}/stage1", f"{se}/stage2"]
    # honest durations: each child spans its own stage, the parent its evaluation; the seconds as metrics
    spans = {r.data.tags["mlflow.runName"]: (r.info.end_time - r.info.start_time) / 1000 for r in children}
    assert spans[f"{se}/stage2"] == pytest.approx(log2["finished_at"] - log2["started_at"], abs=2e-3)
    assert (parent.info.end_time - parent.info.start_time) / 1000 == pytest.approx(ev["finished_at"] - ev["started_at"], abs=2e-3)
    pm = parent.data.metrics
    assert pm["verify_k2_stage1_accuracy_pct"] == pytest.approx(100 * inf[se]["judges"]["stage1"]["verify_accuracy"])
    assert pm["train_seconds"] == pytest.approx(sum(spans.values()), abs=5e-3) and pm["eval_seconds"] > 0
    assert pm["accuracy_pct"] == pytest.approx(100 * ev["accuracy"], abs=5e-6)  # the tables' units
    assert round(pm["accuracy_pct"], 2) == head["main"]["cot5_se/svamp"]
    # its train and test data as dataset inputs, their digests DVC's own hashes of those outputs
    from ruamel.yaml import YAML

    lock = YAML(typ="safe").load((proj / "dvc.lock").read_text())["stages"]

    def lock_md5(stage, path):
        return next(o["md5"] for o in lock[stage]["outs"] if o["path"] == path)

    assert {i.dataset.digest for i in parent.inputs.dataset_inputs} == {
        lock_md5("assemble@svamp-gpt35-teacher-k5-m5", "data/assembled/svamp-gpt35-teacher-k5-m5"),
        lock_md5("prepare@svamp", "data/prepared/svamp")}

    # a second repro re-runs nothing
    assert ran_stages(sh(["dvc", "repro"], proj).stdout) == []

    # one more k in the #CoTs table: exactly that run's stages, and the report
    yaml = YAML()
    p = yaml.load((proj / "params.yaml").read_text())
    p["tables"]["cots"]["values"]["cots"] = [1, 3, 5]
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    ran = ran_stages(sh(["dvc", "repro"], proj).stdout)
    assert sorted(ran) == sorted(["spec", "assemble@svamp-gpt35-teacher-k3-m0", f"stage2@{K3}", f"evaluate@{K3}", "report"]), ran
    assert json.loads((proj / "metrics/headline.json").read_text())["cots"]["cot5/3"] is not None
    ids2 = json.loads((proj / "metrics/mlflow_runs.json").read_text())
    assert ids2 == {**ids, K3: ids2[K3]}  # the report logged the new run only; the others are found by fingerprint
    parents = client.search_runs([exp.experiment_id], "tags.fingerprint IS NOT NULL", max_results=1000)
    assert sorted(r.data.tags["mlflow.runName"] for r in parents) == sorted(RUNS | {K3})

    # another k for the sampled modes: evaluation only (the spec stamp, the new sample sets, the report)
    p = yaml.load((proj / "params.yaml").read_text())
    p["tables"]["inference"]["values"]["inference"] = [m.replace("@2", "@3") for m in MODES2]
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    ran = ran_stages(sh(["dvc", "repro"], proj).stdout)
    assert sorted(ran) == sorted(["spec", *(f"infer@{r}-sample3" for r in SAMPLED), "report"]), ran
    assert json.loads((proj / f"metrics/evaluate/{SAMPLED[1]}-sample3.json").read_text())["k"] == 3
    p["tables"]["inference"]["values"]["inference"] = list(MODES2)
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    # back to k = 2: the sample sets and the report restored from the run-cache, nothing sampled again
    ran = ran_stages(sh(["dvc", "repro"], proj).stdout)
    assert set(ran) <= {"spec", "report"}, ran

    # per-dataset budgets (spec_budget.py): an override for a dataset no run of the method trains on re-runs
    # no training; one for svamp's stage 1 of cot5_se re-runs that run's chain alone, under the same name
    p = yaml.load((proj / "params.yaml").read_text())
    p["methods"]["cot5"]["datasets"] = {"cqa": {"stage2": {"steps": 2}}}
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    ran = ran_stages(sh(["dvc", "repro"], proj).stdout)
    assert set(ran) <= {"spec", "report"}, ran  # the report reads `methods` as a whole
    p["methods"]["cot5_se"]["datasets"] = {"svamp": {"stage1": {"steps": 2}}}
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    ran = ran_stages(sh(["dvc", "repro"], proj).stdout)
    assert sorted(ran) == sorted(["spec", f"stage1@{se}", f"stage2@{se}", f"evaluate@{se}", f"infer@{se}-sample2",
                                  "report"]), ran
    log1 = json.loads((proj / f"metrics/train/{se}/stage1.json").read_text())
    assert (log1["steps"], log1["budget_steps"]) == (2, 2)
    for m in ("cot5", "cot5_se"):
        del p["methods"][m]["datasets"]
    with open(proj / "params.yaml", "w") as f:
        yaml.dump(p, f)
    sh([sys.executable, "-m", "pipeline", "plan"], proj)
    sh(["dvc", "repro"], proj)  # back to the defaults: restored from the run-cache
    assert json.loads((proj / f"metrics/train/{se}/stage1.json").read_text())["steps"] == 3

    # the baseline of the experiments below (the quickstart's last line)
    sh(["git", "add", "-A"], proj)
    sh(["git", "commit", "-qm", "baseline"], proj)

    # share instead of recompute: push to a local remote, clone, pull: every result is back
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "--local", "-f", "-d", "e2e", str(remote)], proj)
    sh(["dvc", "push"], proj)
    clone = proj.parent / "clone"
    sh(["git", "clone", "-q", str(proj), str(clone)], proj.parent)
    sh(["dvc", "remote", "add", "--local", "-f", "-d", "e2e", str(remote)], clone)
    assert not (clone / "data/teacher/svamp/gpt35/train.jsonl").exists()
    sh(["dvc", "pull"], clone)
    for f in ("data/teacher/svamp/gpt35/train.jsonl", "data/teacher/cqa/palm/test.jsonl"):
        assert (clone / f).read_bytes() == (proj / f).read_bytes(), f
    assert ran_stages(sh(["dvc", "repro"], clone).stdout) == []  # nothing to recompute, the teacher least of all

    _FLOW_DONE.add(proj)


_FLOW_DONE: set = set()  # projects whose repro/experiment flow above completed


def _exp_show(proj: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """The documented `dvc exp show`: its header, its rows (cells) and its lines."""
    out = sh(documented_exp_show(), proj).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    table = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if ln.startswith("|")]
    return table[0], [r for r in table[2:]], lines


def _changed_cells(old: dict, new: dict) -> set[str]:
    return {f"{t}.{k}" for t in set(old) | set(new) for k in set(old.get(t, {})) | set(new.get(t, {}))
            if old.get(t, {}).get(k) != new.get(t, {}).get(k)}


def _restore(proj: Path) -> None:
    """The workspace back at the baseline commit (after `dvc exp run` applied an experiment)."""
    sh(["git", "checkout", "--", "."], proj)
    sh(["dvc", "checkout", "-q"], proj)
    assert changed_stages(proj) == set()


def test_spec_typos_and_ablations_at_a_glance(project):
    """A typo in a section no stage reads fails `dvc repro` with one line; one `dvc exp run` and three
    queued experiments read at a glance in the documented `dvc exp show` (<= 40 columns, <= 250
    characters a line): the changed params and every changed table cell, and nothing unchanged; the
    experiments' MLflow runs say which experiment they belong to."""
    proj = project
    if proj not in _FLOW_DONE:
        pytest.skip("the repro/experiment flow above did not complete")
    import subprocess

    from support.e2e import e2e_env

    params_file = proj / "params.yaml"
    original = params_file.read_bytes()
    text = original.decode()
    params_file.write_text(text.replace("\ntrain:\n", "\ntrian:\n  lr: 0.002\ntrain:\n", 1))
    line = 1 + text[:text.index("\ntrain:\n")].count("\n") + 1
    r = subprocess.run(["dvc", "repro"], cwd=proj, env=e2e_env(proj), capture_output=True, text=True, timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and ran_stages(r.stdout) == ["spec"], (r.stdout[-2000:], r.stderr[-2000:])
    assert errors == [f"error: params.yaml:{line}: trian: unknown key (did you mean 'train'?)"], r.stderr
    params_file.write_bytes(original)
    assert ran_stages(sh(["dvc", "repro"], proj).stdout) == []  # nothing was lost, nothing re-runs

    baseline = json.loads(sh(["git", "show", "HEAD:metrics/headline.json"], proj).stdout)
    try:
        ran = ran_stages(sh(["dvc", "exp", "run", "-n", "lr2", "-S", "train.lr=0.002"], proj).stdout)
        assert ran and not any(s.startswith(("prepare@", "teach@", "compare@", "assemble@")) for s in ran), ran
        header, rows, lines = _exp_show(proj)
        changed = _changed_cells(baseline, json.loads((proj / "metrics/headline.json").read_text()))
        width = max(len(ln) for ln in lines)
        print(f"\ndocumented dvc exp show after one ablation: {len(header)} columns, widest line {width}; "
              f"changed cells: {sorted(changed)}")
        assert len(header) <= 40 and width <= 250, lines
        assert [r[0].split()[-1] for r in rows] == ["master", "[lr2]"], rows
        lr = header.index("train.lr")
        assert [r[lr] for r in rows] == ["0.001", "0.002"]
        cells = {h for h in header if "/" in h}
        assert cells == changed, (sorted(cells), sorted(changed))
        assert set(header) - cells == {"Experiment", "Created", "train.lr"}, header
        # MLflow: the experiment's runs say which experiment they belong to, in their name and tags
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
        exp_id = client.get_experiment_by_name("mindsmirror").experiment_id
        lr2 = client.search_runs([exp_id], "tags.`dvc.exp_name` = 'lr2' and tags.fingerprint IS NOT NULL", max_results=100)
        assert sorted(r.data.tags["mlflow.runName"] for r in lr2) == sorted(f"[lr2] {r}" for r in RUNS | {K3})
        _restore(proj)

        # three queued experiments: two change what the teachers table reads (a shorter CQA test
        # split), one retrains with the same lr as lr2 (every training stage restored from the run-cache)
        for name, sets in (("test100", ["+datasets.cqa.limit.test=100"]),
                           ("both", ["train.lr=0.002", "+datasets.cqa.limit.test=100"]),
                           ("lr2q", ["train.lr=0.002"])):
            sh(["dvc", "exp", "run", "--queue", "-n", name, *[a for v in sets for a in ("-S", v)]], proj)
        sh(["dvc", "queue", "start", "-j", "1"], proj)
        import time

        deadline = time.time() + 900
        while True:
            status = sh(["dvc", "queue", "status"], proj).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            assert time.time() < deadline, status
            time.sleep(5)
        assert status.count("Success") == 3, status
        header, rows, lines = _exp_show(proj)
        width = max(len(ln) for ln in lines)
        print(f"documented dvc exp show over 3 queued experiments and one run: {len(header)} columns, widest line {width}")
        assert len(header) <= 40 and width <= 250, lines
        assert {r[0].split()[-1] for r in rows} == {"master", "[lr2]", "[test100]", "[both]", "[lr2q]"}, rows
        assert {"train.lr", "datasets.cqa.limit.test", "teachers.palm/cqa teacher_accuracy"} <= set(header), header
        acc = header.index("teachers.palm/cqa teacher_accuracy")
        by = {r[0].split()[-1]: r for r in rows}
        assert by["[test100]"][acc] == by["[both]"][acc] != by["master"][acc] == by["[lr2]"][acc], rows
        for h in header[2:]:  # every column differs between the rows: nothing unchanged is shown
            assert len({r[header.index(h)] for r in rows}) > 1, (h, rows)
    finally:
        _restore(proj)


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
    assert changed_stages(proj) == set()
    names = stage_names(proj)

    # a teacher's settings: its shared entry (teachers.<name>) and a dataset's differences
    # (datasets.<d>.teachers.<name>) are the params of exactly that teacher's teach stages
    from ruamel.yaml import YAML

    yaml, params_file = YAML(), proj / "params.yaml"
    original_params = params_file.read_bytes()
    for edit in (lambda p: p["teachers"]["gpt4o"].__setitem__("description", "GPT-4o, edited"),
                 lambda p: p["datasets"]["svamp"]["teachers"]["gpt4o"]["sources"][0].__setitem__("parse", "lenient")):
        p = yaml.load(params_file.read_text())
        edit(p)
        with open(params_file, "w") as f:
            yaml.dump(p, f)
        assert changed_stages(proj) == {"spec", "teach@svamp-gpt4o"}  # the spec stage reads every key
        params_file.write_bytes(original_params)
    assert changed_stages(proj) == set()

    # the run planner: the stages that iterate runs.yaml go stale, never prepare or the (paid) teacher;
    # the edit undone, nothing is stale again (DVC compares content, not times)
    planner_file = proj / "pipeline/runs.py"
    original = planner_file.read_bytes()
    with open(planner_file, "a") as f:
        f.write("\n# e2e probe: a run-planner change\n")
    planner = changed_stages(proj)
    assert planner == stages_whose_deps_cover(proj, "pipeline/runs.py") and planner, planner
    assert not any(s.startswith(("prepare@", "teach@")) for s in planner), sorted(planner)
    assert {s.split("@")[0] for s in planner} == {"spec", "assemble", "stage1", "stage2", "evaluate", "infer", "report"}, sorted(planner)
    planner_file.write_bytes(original)
    assert changed_stages(proj) == set()

    # the training loop: a comment line re-runs training, never prepare, the teacher or the evaluations:
    # the same seed gives the same bits, so the checkpoints the evaluations read are unchanged
    with open(proj / "pipeline/training/loop.py", "a") as f:
        f.write("\n# e2e probe: a training-code change\n")
    training = stages_whose_deps_cover(proj, "pipeline/training/loop.py")
    assert changed_stages(proj) == training
    evals = {s for s in names if s.startswith("evaluate@")}
    assert evals and not evals & training  # evaluation runs no training code
    for kind in ("stage1", "stage2"):
        every = {s for s in names if s.startswith(f"{kind}@")}
        assert every and every <= training, (kind, every - training)
    out = sh(["dvc", "repro"], proj).stdout
    ran = set(ran_stages(out))
    print("training-code probe re-ran:", sorted(ran))
    # retrained to the same checkpoints: nothing downstream of them but the report (the logs' times)
    assert ran == training | {"report"}, sorted(ran ^ (training | {"report"}))
    assert changed_stages(proj) == set()

    # the MLflow code: only the report stage (which logs every run once) goes stale, no evaluation
    with open(proj / "pipeline/tracking/log.py", "a") as f:
        f.write("\n# e2e probe: a tracking-code change\n")
    assert changed_stages(proj) == {"report"}
    sh(["dvc", "repro"], proj)

    # the scorer: SVAMP's is_correct now says yes to everything. `dvc status` says exactly which
    # stages a `dvc repro` would re-run; re-running the SVAMP evaluations (and the stale stages they
    # read) re-scores every SVAMP student with the new scorer
    make_svamp_always_correct(proj / "pipeline/tasks/svamp.py")
    scorer = stages_whose_deps_cover(proj, "pipeline/tasks/svamp.py")
    assert changed_stages(proj) == scorer
    svamp_evals = {s for s in names if re.match(r"evaluate@svamp-", s)}
    assert len(svamp_evals) == len(RUNS) + 1 and svamp_evals <= scorer
    student = {f"pipeline/{d}/{f.name}" for d in ("student", "training") for f in (proj / "pipeline" / d).glob("*.py")}
    assert not set().union(*(stages_whose_deps_cover(proj, f) for f in student)) - scorer
    want = (svamp_evals | upstream(proj, svamp_evals)) & scorer
    out = sh(["dvc", "repro", *sorted(svamp_evals)], proj).stdout
    ran = set(ran_stages(out))
    print("scorer probe re-ran:", sorted(ran))
    assert ran == want, out
    assert {"prepare@svamp", "teach@svamp-gpt35"} <= ran
    for run in RUNS | {K3}:
        ev = json.loads((proj / f"metrics/evaluate/{run}.json").read_text())
        assert ev["accuracy"] == 1.0 and ev["correct"] == ev["total"] == 24, (run, ev)
    # what is left stale: the other datasets' stages that run the scorer, and the report
    assert changed_stages(proj) == (scorer - ran) | {"report"}
