"""The runs are derived from the tables: the union of their cells, deduplicated, with stable names;
runs.yaml (what dvc.yaml iterates) is in sync with params.yaml; bad tables fail with the key path."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pipeline.core.errors import PipelineError
from pipeline.runs import RUNS_FILE, Plan, cells, check_plan, derive, plan, render, tables_of, write_plan
from pipeline.core.spec import load_params
from support import ROOT

PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def _doc(path: Path = ROOT / "profiles" / "offline.yaml"):
    return YAML(typ="rt").load(path.read_text(encoding="utf-8"))


def _write(tmp_path: Path, doc) -> Path:
    buf = io.StringIO()
    YAML(typ="rt").dump(doc, buf)
    p = tmp_path / "params.yaml"
    p.write_text(buf.getvalue(), encoding="utf-8")
    return p


def _error(tmp_path: Path, edit) -> str:
    doc = _doc()
    edit(doc)
    with pytest.raises(PipelineError) as ei:
        load_params(_write(tmp_path, doc))
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- derivation
def test_committed_runs_file_is_in_sync_with_params_yaml():
    """dvc.yaml iterates runs.yaml: it must list exactly the runs of params.yaml's tables."""
    check_plan(load_params(ROOT / "params.yaml"), ROOT / RUNS_FILE)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_plans(path):
    p = load_params(path)
    doc = plan(p)
    assert doc["runs"] and set(doc["two_stage_runs"]) <= set(doc["runs"])
    assert {r["assembly"] for r in doc["runs"].values()} == set(doc["assemblies"])


def test_a_cell_two_tables_share_is_one_run_with_a_readable_name():
    p = load_params(ROOT / "profiles" / "offline.yaml")
    runs = derive(p)
    name = "svamp-gpt35-cot5_se-base-teacher-k5-m5-s42"
    assert name in runs
    users = tables_of(p)[name]
    assert {"main", "students", "cots", "self_evals"} <= set(users)
    n_cells = sum(len(c.runs) for t in p.tables for c in cells(p, t))
    assert len(runs) < n_cells  # shared cells are deduplicated
    assert len(set(runs)) == len(runs)
    r = Plan(p).run(name)
    assert (r.dataset, r.method, r.student, r.labels, r.cots, r.self_evals, r.seed) == (
        "svamp", "cot5_se", "base", "teacher", 5, 5, 42)
    assert r.assembly.name == "svamp-gpt35-teacher-k5-m5" and r.two_stage


def test_table_values_override_the_method_defaults():
    p = load_params(ROOT / "profiles" / "offline.yaml")
    cots = {(c.row, c.col): c.runs[0] for c in cells(p, "cots")}
    assert cots["cot5_se", 1].cots == 1 and cots["cot5_se", 1].self_evals == 5
    assert cots["cot5", 1].name == "svamp-gpt35-cot5-base-teacher-k1-m0-s42"
    gold = {(c.row, c.col): c.runs[0] for c in cells(p, "labels")}["cot1", "gold"]
    assert gold.labels == "gold" and gold.name == "svamp-gpt35-cot1-base-gold-k1-m0-s42"


def test_seeds_give_one_run_per_seed_and_omitted_cells_none(tmp_path):
    doc = _doc()
    doc["tables"]["cots"]["seeds"] = [1, 2, 3]
    p = load_params(_write(tmp_path, doc))
    c = next(c for c in cells(p, "cots") if (c.row, c.col) == ("cot5", 1))
    assert [r.seed for r in c.runs] == [1, 2, 3] and len({r.name for r in c.runs}) == 3
    main = cells(p, "main", omitted=True)
    omitted = [(c.row, c.col) for c in main if c.omitted]
    assert omitted == [("standard_kd", "cqa"), ("cot1_se", "cqa"), ("cot5", "cqa"), ("cot5_se", "cqa")]
    assert all(not c.runs for c in main if c.omitted)
    assert not any(r.dataset == "cqa" and r.two_stage for r in derive(p).values())


def test_names_are_stable_and_adding_a_value_adds_only_its_runs(tmp_path):
    p0 = load_params(ROOT / "profiles" / "offline.yaml")
    doc = _doc()
    doc["tables"]["self_evals"]["values"]["self_evals"].append(7)
    p1 = load_params(_write(tmp_path, doc))
    added = set(derive(p1)) - set(derive(p0))
    assert added == {"svamp-gpt35-cot5_se-base-teacher-k5-m7-s42"}
    assert set(derive(p0)) <= set(derive(p1))


def test_stale_or_missing_runs_file_is_one_clear_error(tmp_path):
    p = load_params(ROOT / "profiles" / "offline.yaml")
    f = tmp_path / "runs.yaml"
    with pytest.raises(PipelineError, match="missing; run `python -m pipeline plan`"):
        check_plan(p, f)
    write_plan(p, f)
    check_plan(p, f)
    f.write_text(render(p).replace("k5-m5", "k5-m4", 1))
    with pytest.raises(PipelineError, match="out of date with the tables"):
        check_plan(p, f)


def test_unknown_run_is_one_clear_error():
    p = load_params(ROOT / "profiles" / "offline.yaml")
    with pytest.raises(PipelineError, match="in no table"):
        Plan(p).run("svamp-nope-base-teacher-k5-m5-s42")


# --------------------------------------------------------------------------- bad tables
def _append(key_path, value):
    def edit(doc):
        node = doc
        for k in key_path:
            node = node[k]
        node.append(value)
    return edit


@pytest.mark.parametrize("edit,expected", [
    (_append(("tables", "main", "values", "method"), "cot9"),
     r"tables\.main\.values\.method: 'cot9' is not a key of methods"),
    (_append(("tables", "main", "values", "dataset"), "gsm8k"),
     r"tables\.main\.values\.dataset: 'gsm8k' is not a key of datasets"),
    (_append(("tables", "students", "values", "student"), "xl"),
     r"tables\.students\.values\.student: 'xl' is not a key of students"),
    (lambda d: d["tables"]["labels"]["fixed"].__setitem__("student", "huge"),
     r"tables\.labels\.fixed\.student: 'huge' is not a key of students"),
    (lambda d: d["tables"]["cots"].__setitem__("seeds", []),
     r"tables\.cots\.seeds: .*at least one seed"),
    (_append(("tables", "labels", "values", "labels"), "silver"),
     r"tables\.labels\.values\.labels: 'silver' is not gold or teacher"),
    (lambda d: d["tables"]["self_evals"]["values"].__setitem__("method", ["cot5"]) or
     d["tables"]["self_evals"].__setitem__("rows", "method"),
     r"tables\.self_evals\.values\.self_evals: method 'cot5' has se_epochs 0"),
    (lambda d: d["tables"]["main"].__setitem__("cols", "method"),
     r"tables\.main\.cols: must differ from rows"),
    (lambda d: d["tables"]["main"]["fixed"].pop("student"),
     r"tables\.main: set `student`"),
])
def test_a_bad_table_names_its_key_path(tmp_path, edit, expected):
    msg = _error(tmp_path, edit)
    assert re.search(expected, msg), msg
    assert re.search(r"params\.yaml(:\d+)?: tables\.", msg), msg


def test_a_bad_table_error_names_the_line(tmp_path):
    msg = _error(tmp_path, lambda d: d["tables"]["cots"].__setitem__("seeds", []))
    text = (tmp_path / "params.yaml").read_text().splitlines()
    line = int(re.search(r"params\.yaml:(\d+):", msg).group(1))
    assert text[line - 1].strip().startswith("seeds:"), (line, text[line - 1])


@pytest.mark.parametrize("path", [ROOT / "params.yaml", ROOT / "profiles" / "offline.yaml"], ids=lambda p: p.name)
def test_dvc_plots_define_every_line_figure(path):
    """Each `show: line` table has a DVC plot over the CSV the report writes: x = its cols, y = its rows."""
    plots = {k: v for d in YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["plots"] for k, v in d.items()}
    p = load_params(path)
    for name, t in p.tables.items():
        if t.show != "line":
            continue
        assert name in plots, f"dvc.yaml: no plot for the line table {name!r}"
        assert plots[name]["x"] == t.cols
        assert plots[name]["y"] == {f"reports/figures/{name}.csv": [str(v) for v in t.values[t.rows]]}


def test_the_teacher_is_a_dimension_and_runs_without_teacher_output_have_none(tmp_path):
    doc = _doc()
    doc["tables"]["by_teacher"]["values"].update(method=["standard_ft", "cot1"], teacher=["gpt35", "gpt4o", "gemini"])
    p = load_params(_write(tmp_path, doc))
    cs = {(str(c.row), str(c.col)): c for c in cells(p, "by_teacher")}
    # gold labels and no CoTs read no teacher: one run, whichever teacher the cell names
    ft = {cs["standard_ft", t].runs[0].name for t in ("gpt35", "gpt4o", "gemini")}
    assert ft == {"svamp-none-standard_ft-base-gold-k0-m0-s42"}
    assert cs["cot1", "gpt4o"].runs[0].name == "svamp-gpt4o-cot1-base-teacher-k1-m0-s42"
    assert cs["cot1", "gpt4o"].runs[0].assembly.teacher_dir == "data/teacher/svamp/gpt4o"
    assert cs["standard_ft", "gpt4o"].runs[0].assembly.teacher_dir == "data/prepared/svamp"
    # a cell that names no teacher uses the dataset's default: changing the default renames those runs only
    before = set(derive(p))
    doc["datasets"]["svamp"]["teacher"] = "gemini"
    after = set(derive(load_params(_write(tmp_path, doc))))
    assert "svamp-gemini-cot5_se-base-teacher-k5-m5-s42" in after - before
    assert "svamp-gpt4o-cot1-base-teacher-k1-m0-s42" in before & after
    assert "svamp-none-standard_ft-base-gold-k0-m0-s42" in before & after


def test_teach_runs_once_per_dataset_and_teacher_and_dvc_finds_its_params():
    from pipeline.runs import plan

    p = load_params(ROOT / "profiles" / "offline.yaml")
    teachings = plan(p)["teachings"]
    assert set(teachings) == {f"{d}-{t}" for d, ds in p.datasets.items() for t in ds.teachers}
    doc = _doc()
    for t in teachings.values():  # the teach stage's params (dvc.yaml) exist, so `dvc exp run -S` reaches them
        assert t["teacher"] in doc["teachers"] and t["teacher"] in doc["datasets"][t["dataset"]]["teachers"]


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["tables"]["by_teacher"]["values"]["teacher"].append("gpt5"),
     "tables.by_teacher.values.teacher: 'gpt5' is not a teacher of dataset svamp"),
    (lambda d: d["datasets"]["svamp"].__setitem__("teacher", "palm"),
     "datasets.svamp.teacher: 'palm' is not one of this dataset's teachers (gpt35, gpt4o, gemini)"),
    (lambda d: d["datasets"]["svamp"]["teachers"].__setitem__("claude", {}),
     "datasets.svamp.teachers.claude: no `teachers.claude` entry"),
    (lambda d: d["teachers"]["gpt35"].__setitem__("backend", "openai"),
     "datasets.svamp.teachers.gpt35.sources: not a setting of the openai backend"),
    (lambda d: d["teachers"]["gpt35"].update(backend="openai", model=None) or d["datasets"]["svamp"]["teachers"].__setitem__("gpt35", {}),
     "teachers.gpt35.model: Input should be a valid string"),
    (lambda d: d["datasets"]["svamp"]["teachers"]["gpt35"].__setitem__("temperature", 0.7),
     "datasets.svamp.teachers.gpt35.temperature: not a setting of the replay backend"),
    (lambda d: d["teachers"].__setitem__("none", {"backend": "replay"}),
     "teachers.none: reserved"),
])
def test_bad_teacher_settings_get_one_line_naming_the_key(tmp_path, edit, expected):
    assert expected in _error(tmp_path, edit)


def test_a_live_teacher_names_its_key_variable_never_the_key(tmp_path):
    def live(d, **extra):
        d["teachers"]["gpt35"] = {"backend": "openai", "model": "m", **extra}
        d["datasets"]["svamp"]["teachers"]["gpt35"] = {}
    assert "teachers.gpt35.api_key_env: 'sk-abc123' is not an environment variable name" in _error(
        tmp_path, lambda d: live(d, api_key_env="sk-abc123"))
    assert "teachers.gpt35.base_url: credentials in the URL" in _error(
        tmp_path, lambda d: live(d, base_url="http://user:pw@localhost:8000/v1"))
    doc = _doc()
    live(doc, base_url="http://localhost:8000/v1", api_key_env="VLLM_API_KEY")
    doc["datasets"]["svamp"]["teachers"]["gpt35"] = {"budget_usd": 3.0}  # a per-dataset difference
    t = load_params(_write(tmp_path, doc)).teacher("svamp", "gpt35")
    assert (t.model, t.base_url, t.api_key_env, t.budget_usd) == ("m", "http://localhost:8000/v1", "VLLM_API_KEY", 3.0)


def test_request_params_reach_every_request_and_its_journal_key(tmp_path):
    from pipeline.tasks import get_task
    from pipeline.teacher.openai import Planner
    from support.examples import example

    def live(d, **extra):
        d["teachers"]["gpt35"] = {"backend": "openai", "model": "m", **extra}
        d["datasets"]["svamp"]["teachers"]["gpt35"] = {}
    assert "teachers.gpt35.request_params: temperature is set by the teacher itself" in _error(
        tmp_path, lambda d: live(d, request_params={"temperature": 1.0}))
    keys = {}
    for extra in ({}, {"request_params": {"reasoning_effort": "none"}}):
        doc = _doc()
        live(doc, **extra)
        t = load_params(_write(tmp_path, doc)).teacher("svamp", "gpt35")
        groups, _ = Planner(get_task("svamp"), t, "http://127.0.0.1:1/v1").cot_slots([example(split="train")])
        g = next(iter(groups.values()))
        keys[bool(extra)] = g.key
        assert g.params.get("reasoning_effort") == ("none" if extra else None)
    assert keys[True] != keys[False]  # another request body: another answer


def test_compare_is_told_its_teachers_so_another_list_reruns_it(tmp_path, monkeypatch):
    from pipeline.runs import plan
    from pipeline.stages import compare

    p = load_params(ROOT / "profiles" / "offline.yaml")
    assert plan(p)["comparisons"]["svamp"] == {"teachers": "gpt35,gpt4o,gemini"}  # in compare's command (dvc.yaml)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="told to compare gpt35, gpt4o, but params.yaml lists gpt35, gpt4o, gemini"):
        compare.run(p, "svamp", ["gpt35", "gpt4o"])
