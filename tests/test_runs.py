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
    name = "svamp-cot5_se-base-teacher-k5-m5-s42"
    assert name in runs
    users = tables_of(p)[name]
    assert {"main", "students", "cots", "self_evals"} <= set(users)
    n_cells = sum(len(c.runs) for t in p.tables for c in cells(p, t))
    assert len(runs) < n_cells  # shared cells are deduplicated
    assert len(set(runs)) == len(runs)
    r = Plan(p).run(name)
    assert (r.dataset, r.method, r.student, r.labels, r.cots, r.self_evals, r.seed) == (
        "svamp", "cot5_se", "base", "teacher", 5, 5, 42)
    assert r.assembly.name == "svamp-teacher-k5-m5" and r.two_stage


def test_table_values_override_the_method_defaults():
    p = load_params(ROOT / "profiles" / "offline.yaml")
    cots = {(c.row, c.col): c.runs[0] for c in cells(p, "cots")}
    assert cots["cot5_se", 1].cots == 1 and cots["cot5_se", 1].self_evals == 5
    assert cots["cot5", 1].name == "svamp-cot5-base-teacher-k1-m0-s42"
    gold = {(c.row, c.col): c.runs[0] for c in cells(p, "labels")}["cot1", "gold"]
    assert gold.labels == "gold" and gold.name == "svamp-cot1-base-gold-k1-m0-s42"


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
    assert added == {"svamp-cot5_se-base-teacher-k5-m7-s42"}
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
