"""What checkpoint selection costs, and what ``train.select_cap`` saves: one run's stage 2, trained twice
from the same inputs (the project's assembled and prepared data), with the cap off and on, at the paper's
decoding lengths (``select_max_new_tokens`` 64, inputs up to 1024 tokens) and the paper protocol (valid
and test decoded at every selection point). Prints the time in selection and its share of the stage,
and checks that both runs evaluated the same accuracies and selected the same step.

    .venv/bin/python benchmarks/bench_selection.py --project /path/to/project --run RUN [--select-every 0.25]

The project must have run ``dvc repro assemble`` (and prepare) for the run. Nothing in it is written:
the stages run in a temporary directory that links its ``data/``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--run", required=True)
    ap.add_argument("--select-every", type=float, default=None, help="epochs between selection points (default: the params')")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="select_max_new_tokens (the paper profile's)")
    ap.add_argument("--max-input", type=int, default=1024, help="max_input_length (the paper profile's)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    proj = a.project.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "proj"
        work.mkdir()
        (work / "data").symlink_to(proj / "data")
        shared = proj.parent / "shared"
        if shared.exists():
            (Path(tmp) / "shared").symlink_to(shared.resolve())
        os.environ["DVC_ROOT"] = str(work)
        os.chdir(work)
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        from pipeline.core.spec import load_params
        from pipeline.runs import Plan
        from pipeline.stages.train import run_stage2
        from pipeline.tasks import TASKS

        params = load_params(proj / "params.yaml", tasks=TASKS)
        plan = Plan(params)
        run = plan.run(a.run)
        if run.two_stage:
            raise SystemExit(f"{a.run}: a two-stage run (its stage 2 needs the stage-1 checkpoint); pick a one-stage run")
        logs = {}
        for cap in (False, True):
            update = {"select_cap": cap, "select_max_new_tokens": a.max_new_tokens, "max_input_length": a.max_input}
            if a.select_every is not None:
                update["select_every"] = a.select_every
            p = params.model_copy(update={"train": params.train.model_copy(update=update)})
            logs[cap] = run_stage2(p, a.run, plan)
        print(f"# {a.run}: {logs[False].rows} rows, {logs[False].steps} steps, {len(logs[False].evals)} selection points, "
              f"select_max_new_tokens {a.max_new_tokens}, max_input_length {a.max_input}, paper_protocol "
              f"{params.train.paper_protocol}, torch threads {torch.get_num_threads()}")
        print(f"{'select_cap':<11} {'stage s':>8} {'selection s':>12} {'share':>6} {'selected step':>14} {'valid':>7}")
        for cap, log in logs.items():
            print(f"{str(cap):<11} {log.seconds:>8.1f} {log.selection_seconds:>12.1f} "
                  f"{100 * log.selection_seconds / log.seconds:>5.1f}% {log.selected.step:>14} {log.selected.valid_accuracy:>7.4f}")
        same = [e.model_dump() for e in logs[False].evals] == [e.model_dump() for e in logs[True].evals]
        print(f"same evaluations at every point: {same}; selection time saved: "
              f"{100 * (1 - logs[True].selection_seconds / logs[False].selection_seconds):.1f}%")
        print(json.dumps({str(c): {"seconds": log.seconds, "selection_seconds": log.selection_seconds,
                                   "selected_step": log.selected.step} for c, log in logs.items()}))
        if not same:
            raise SystemExit("the capped decoding changed an evaluation")


if __name__ == "__main__":
    main()
