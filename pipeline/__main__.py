"""One CLI for every stage: ``python -m pipeline <command> [--dataset D | ASSEMBLY | RUN]`` (or ``mm``).

Every command validates the whole ``params.yaml`` first (and the stages that iterate ``runs.yaml``
check that it is in sync with the tables, through their own module's ``Plan.checked``); a problem
with the user's input is one line on stderr and exit code 2, and outputs written by earlier stages
are left untouched.

``COMMANDS`` names, for each subcommand, the one module that runs it. That module is imported only
when its subcommand runs, so this file pulls no stage's code into another stage; and it is the
registry ``tests/test_deps.py`` reads to check each ``dvc.yaml`` stage's ``deps`` against the code
the stage runs (this file, the command's module and everything they import).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from .core.errors import PipelineError


def _params(args):
    from .core.spec import load_params
    from .tasks import TASKS

    return load_params(args.params, tasks=TASKS)


def _planned(args, stage: ModuleType):
    """The params and the plan of a stage that iterates runs.yaml, checked in sync through the stage's
    own ``Plan`` (so that this module imports no planner: ``teach`` must not depend on it)."""
    params = _params(args)
    return params, stage.Plan.checked(params)


def cmd_prepare(args, prepare: ModuleType):
    m = prepare.run(_params(args), args.dataset)
    print(f"prepare {args.dataset}: {m.rows}")


def cmd_teach(args, teach: ModuleType):
    params = _params(args)
    name = args.teacher or teach.dataset_spec(params, args.dataset).teacher
    m = teach.run(params, args.dataset, name)
    for split, s in m.splits.items():
        print(f"teach {args.dataset}/{name}/{split}: {teach.summary(s)}")


def cmd_compare(args, compare: ModuleType):
    c = compare.run(_params(args), args.dataset, args.teachers.split(",") if args.teachers else None)
    figures = ", ".join(f"{t} {'n/a' if v.accuracy is None else f'{100 * v.accuracy:.2f}%'}"
                        + (" (CoTs selected by gold)" if v.selected_by_gold else "") for t, v in c.teachers.items())
    print(f"compare {args.dataset}: first-CoT accuracy on the {c.questions} {c.split or '-'} questions every teacher "
          f"answered: {figures}")


def cmd_assemble(args, assemble: ModuleType):
    params, plan = _planned(args, assemble)
    m = assemble.run(params, args.assembly, plan)
    print(f"assemble {args.assembly}: {m.stage2_rows} stage-2 rows, {m.stage1_rows} stage-1 rows, "
          f"{m.excluded_unparseable} excluded")


def cmd_stage1(args, train: ModuleType):
    params, plan = _planned(args, train)
    train.run_stage1(params, args.run, plan)


def cmd_stage2(args, train: ModuleType):
    params, plan = _planned(args, train)
    train.run_stage2(params, args.run, plan)


def cmd_evaluate(args, evaluate: ModuleType):
    params, plan = _planned(args, evaluate)
    m = evaluate.run(params, args.run, plan)
    print(f"evaluate {args.run}: accuracy {m.accuracy:.4f} ({m.correct}/{m.total})")


def cmd_infer(args, infer: ModuleType):
    params, plan = _planned(args, infer)
    m = infer.run(params, args.samples, plan)
    judged = "".join(f", verify@{m.k}/{j} {j_m.verify_accuracy:.4f} (AUROC {j_m.auroc if j_m.auroc is not None else 'n/a'})"
                     for j, j_m in m.judges.items())
    print(f"infer {args.samples}: vote@{m.k} {m.vote_accuracy:.4f}, oracle@{m.k} {m.oracle_accuracy:.4f}{judged}")


def cmd_report(args, report: ModuleType):
    out = report.run(*_planned(args, report))
    print(f"report: wrote {', '.join(str(p) for p in out)}")


def cmd_schemas(args, schemas_io: ModuleType):
    for p in schemas_io.write_schemas():
        print(p)


def cmd_validate(args, spec: ModuleType):
    from .tasks import TASKS

    print(spec.validate(spec.load(args.params, TASKS), args.params, args.stamp))


def cmd_plan(args, spec: ModuleType):
    from .tasks import TASKS

    print(spec.write(spec.load(args.params, TASKS)))


def cmd_forecast(args, forecast: ModuleType):
    from pathlib import Path

    def number(opt: str, v):
        try:
            return None if v is None else float(v)
        except ValueError:
            raise PipelineError(f"--{opt}: {v!r} is not a number") from None

    if args.device not in (None, "cpu", "cuda"):
        raise PipelineError(f"--device: {args.device!r} is not cpu or cuda")
    params, plan = _planned(args, forecast)
    fc = forecast.run(params, plan, args.sizes, args.device, Path(args.calibration) if args.calibration else None,
                      number("max-hours", args.max_hours), number("max-usd", args.max_usd))
    print("\n".join(forecast.lines(fc)))
    print(f"wrote {forecast.OUT}")


def cmd_shard(args, shard: ModuleType):
    from pathlib import Path

    def integer(opt: str, v) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            raise PipelineError(f"--{opt}: {v!r} is not a whole number") from None

    if args.device not in (None, "cpu", "cuda"):
        raise PipelineError(f"--device: {args.device!r} is not cpu or cuda")
    params, plan = _planned(args, shard)
    share, loads, unit = shard.run(params, plan, integer("workers", args.workers), integer("index", args.index),
                                   args.device, Path(args.calibration) if args.calibration else None)
    print(" ".join(share.targets))
    print(f"shard {share.index}/{len(loads)}: {len(share.runs)} of {len(plan.runs)} runs, {len(share.targets)} targets, "
          f"~{share.cost:,.2f} of {sum(loads):,.2f} {unit} (workers: {', '.join(f'{x:,.2f}' for x in loads)})",
          file=sys.stderr)


def cmd_use_profile(args, profiles: ModuleType):
    dest = profiles.use_profile(args.name, args.params)
    print(f"{dest}: now the {args.name!r} profile (runs.yaml regenerated)")


def cmd_teach_batch(args, teach: ModuleType):
    from pathlib import Path

    params = _params(args)
    path = lambda v: Path(v) if v else None  # noqa: E731
    teach.batch_files(params, args.dataset, args.teacher or teach.dataset_spec(params, args.dataset).teacher,
                      path(args.export), path(getattr(args, "import")))


def cmd_estimate(args, teach: ModuleType):
    params = _params(args)
    teach.estimate(params, args.dataset, args.teacher or teach.dataset_spec(params, args.dataset).teacher)


OPTION_HELP = {"teachers": "comma-separated (default: the dataset's teacher)",
               "sizes": "question counts to assume instead of the loaded ones: 'anli1:train=16946,valid=1000;cqa:test=1221'",
               "device": "cpu or cuda: whose throughput (default: cuda, unless train.device is cpu)",
               "calibration": "a Throughput file (benchmarks/bench_train.py --calibrate) for one student of the profile",
               "max-hours": "refuse (exit 2, one line) when the estimated accelerator hours are above this",
               "max-usd": "refuse (exit 2, one line) when the teachers' bill may be above this (every sample at max_tokens)",
               "export": "write the request file of the first phase with missing samples (OpenAI's batch input format)",
               "import": "record an output file of that format (e.g. from vLLM's run-batch) in the journal",
               "workers": "how many workers share the runs",
               "index": "this worker's index, 0..workers-1",
               "stamp": "write the `spec` stage's stamp (metrics/spec.json) when the spec is valid"}


@dataclass(frozen=True)
class Command:
    module: str  # the module that runs the command, imported only when it runs
    handler: Callable[[argparse.Namespace, ModuleType], None]  # called with the imported module
    help: str
    needs: tuple[str, ...] = ()  # required options (--dataset D)
    target: str = ""  # a positional argument: the assembly or run (runs.yaml) the command builds
    options: tuple[str, ...] = ()  # optional options (--teacher T: default, the dataset's default teacher)
    flags: tuple[str, ...] = ()  # optional switches (--stamp)


COMMANDS: dict[str, Command] = {
    "prepare": Command("pipeline.stages.prepare", cmd_prepare, "canonical examples per split", ("dataset",)),
    "teach": Command("pipeline.stages.teach", cmd_teach, "teacher records of one (dataset, teacher)", ("dataset",),
                     options=("teacher",)),
    "compare": Command("pipeline.stages.compare", cmd_compare, "a dataset's teachers on the questions they all answered",
                       ("dataset",), options=("teachers",)),
    "assemble": Command("pipeline.stages.assemble", cmd_assemble, "training rows of one assembly (runs.yaml)", target="assembly"),
    "stage1": Command("pipeline.stages.train", cmd_stage1, "stage 1 of a two-stage run: train on self-evaluations", target="run"),
    "stage2": Command("pipeline.stages.train", cmd_stage2, "stage 2 (or the only stage) of a run: train on CoTs / labels",
                      target="run"),
    "evaluate": Command("pipeline.stages.evaluate", cmd_evaluate, "decode the test split, score", target="run"),
    "infer": Command("pipeline.stages.infer", cmd_infer, "k sampled CoTs per test question, vote@k and verify@k "
                     "(the run's own judges), judge quality", target="samples"),
    "report": Command("pipeline.stages.report", cmd_report,
                      "every table and figure from the metrics files; each run to MLflow, once"),
    "plan": Command("pipeline.stages.spec", cmd_plan, "write runs.yaml: the runs of params.yaml's tables, for dvc.yaml"),
    "forecast": Command("pipeline.stages.forecast", cmd_forecast, "the compute plan before anything runs: steps, selection, "
                        "decodes and accelerator hours per run and table, the teachers' requests, tokens and $",
                        options=("sizes", "device", "calibration", "max-hours", "max-usd")),
    "shard": Command("pipeline.stages.shard", cmd_shard, "worker I of N's `dvc repro` targets, balanced by the "
                     "forecast's time (the teach outputs checked present first; the teacher never called)",
                     ("workers", "index"), options=("device", "calibration")),
    "teach-batch": Command("pipeline.stages.teach", cmd_teach_batch, "the Batch API's files offline: export a "
                           "phase's requests, import an engine's output into the journal (nothing is sent)",
                           ("dataset",), options=("teacher", "export", "import")),
    "estimate": Command("pipeline.stages.teach", cmd_estimate,
                        "requests, tokens and cost of a live teacher, before sending anything", ("dataset",),
                        options=("teacher",)),
    "schemas": Command("pipeline.schemas", cmd_schemas, "regenerate schemas/*.schema.json from the models"),
    "validate": Command("pipeline.stages.spec", cmd_validate, "validate params.yaml (and check runs.yaml is in sync)",
                        flags=("stamp",)),
    "use-profile": Command("pipeline.profiles", cmd_use_profile, "copy profiles/<name>.yaml over params.yaml"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the spec (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, c in COMMANDS.items():
        p = sub.add_parser(name, help=c.help)
        for n in c.needs:
            p.add_argument(f"--{n}", required=True, help=OPTION_HELP.get(n))
        for n in c.options:
            p.add_argument(f"--{n}", default=None, help=OPTION_HELP.get(n, f"default: the dataset's {n}"))
        for n in c.flags:
            p.add_argument(f"--{n}", action="store_true", help=OPTION_HELP[n])
        if c.target:  # positional: `--run` would clash with torchrun's own `--run-path` (argparse prefixes)
            p.add_argument(c.target, help=f"the {c.target}'s name, as runs.yaml lists it")
        if name == "use-profile":
            p.add_argument("name")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    try:
        command = COMMANDS[args.command]
        command.handler(args, importlib.import_module(command.module))
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if os.environ.get("MM_TIMING"):
        print(f"[{args.command}] {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
