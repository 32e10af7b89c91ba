"""``python -m pipeline shard``: the runs split over N workers by the forecast's cost (LPT), each run's
targets (``evaluate@`` and its ``infer@`` sample sets) on exactly one worker, and the bad input of the
issue as one line each. Two real workers and the merge are in ``test_e2e_shard.py``."""
from __future__ import annotations

import json

import pytest

from support.cli import cli

SIZES = {"svamp": (700, 150, 150), "svamp_dss": (700, 100, 200), "cqa": (8766, 975, 1221), "anli1": (16946, 1000, 1000)}


def test_balance_is_lpt_and_deterministic():
    from pipeline.stages.shard import balance

    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 1.0}
    assert balance(costs, 2) == [["a", "d"], ["b", "c", "e"]]  # 5 -> w0, 4 -> w1, 3 -> w1 (7), 3 -> w0 (8), 1 -> w1 (8)
    assert balance(dict(reversed(list(costs.items()))), 2) == balance(costs, 2)  # the input order does not matter
    assert balance(costs, 1) == [["a", "b", "c", "d", "e"]]
    assert balance({"x": 1.0, "y": 1.0}, 2) == [["x"], ["y"]]  # ties by name, then by worker index
    assert balance({"p": 0.0, "q": 0.0, "r": 0.0}, 2) == [["p", "r"], ["q"]]  # no cost: spread by count


@pytest.fixture
def prepared(cli_project, monkeypatch):
    """The offline profile with its prepare metrics written (the sizes of the real splits)."""
    from pipeline.core.spec import load_params
    from pipeline.tasks import TASKS

    params = load_params(cli_project / "params.yaml", tasks=TASKS)
    d = cli_project / "metrics" / "prepare"
    d.mkdir(parents=True)
    for ds in params.datasets:
        tr, va, te = SIZES[ds]
        rows = {"train": tr, "valid": va, "test": te}
        (d / f"{ds}.json").write_text(json.dumps({"dataset": ds, "rows": rows, "source_rows": rows,
                                                  "valid_carved_from_train": False}))
    monkeypatch.setenv("DVC_ROOT", str(cli_project))
    return params


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_every_target_on_exactly_one_worker_and_balanced(prepared, workers):
    from pipeline.runs import Plan
    from pipeline.stages.shard import run, run_costs

    plan = Plan(prepared)
    shares = [run(prepared, plan, workers, i, "cpu", check_teacher=False) for i in range(workers)]
    targets = [t for s, _, _ in shares for t in s.targets]
    assert len(targets) == len(set(targets))
    assert set(targets) == {f"evaluate@{r}" for r in plan.runs} | {f"infer@{i}" for i in plan.inferences}
    costs, unit = run_costs(prepared, plan, "cpu", None)
    loads = shares[0][1]
    assert [s.cost for s, _, _ in shares] == loads and sum(loads) == pytest.approx(sum(costs.values()))
    # LPT: the most loaded worker is above the least loaded by at most its last run's cost
    hi = max(range(workers), key=lambda w: loads[w])
    assert loads[hi] - min(loads) <= min(costs[r] for r in shares[hi][0].runs) + 1e-9
    assert "rows + decodes" in unit  # no cpu throughput for the offline profile's students: said in the unit


def test_bad_input_one_line(prepared, cli_project):
    for args, words in [(("--workers", "2", "--index", "2"), ("--index 2", "0..1")),
                        (("--workers", "0", "--index", "0"), ("--workers 0", "at least 1")),
                        (("--workers", "two", "--index", "0"), ("--workers", "whole number")),
                        (("--workers", "999", "--index", "0"), ("--workers 999", "runs")),
                        (("--workers", "2", "--index", "1", "--device", "tpu"), ("--device", "cpu or cuda"))]:
        r = cli(cli_project, "shard", *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, (args, r.stdout, r.stderr)
        assert all(w in lines[0] for w in words), (args, lines[0])


def test_teacher_not_locked_is_one_line_and_runs_nothing(prepared, cli_project):
    r = cli(cli_project, "shard", "--workers", "2", "--index", "0")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    line, = r.stderr.strip().splitlines()
    assert "not in dvc.lock" in line and "run and push `teach` first" in line and "never calls the teacher" in line
    assert not (cli_project / "data").exists()
