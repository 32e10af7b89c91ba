"""One CLI for every stage: ``python -m pipeline <stage> [--dataset D] [--method M]`` (or ``mm``).

Every command validates the whole ``params.yaml`` first; a problem with the user's input is one
line on stderr and exit code 2, and outputs written by earlier stages are left untouched.

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

from .errors import PipelineError


def _params(args):
    from .spec import load_params

    return load_params(args.params)


def cmd_prepare(args, prepare: ModuleType):
    m = prepare.run(_params(args), args.dataset)
    print(f"prepare {args.dataset}: {m['rows']}")


def cmd_teach(args, teach: ModuleType):
    m = teach.run(_params(args), args.dataset)
    for split, s in m["splits"].items():
        acc = "n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}%"
        print(f"teach {args.dataset}/{split}: {s['questions']} questions, {s['cots']} CoTs, "
              f"parse rate {s['parse_rate']}, teacher accuracy {acc} ({s['correct']}/{s['questions']})")


def cmd_assemble(args, assemble: ModuleType):
    m = assemble.run(_params(args), args.dataset, args.method)
    print(f"assemble {args.dataset}/{args.method}: {m}")


def cmd_pretrain(args, train: ModuleType):
    train.run_stage1(_params(args), args.dataset, args.method)


def cmd_train(args, train: ModuleType):
    train.run_stage2(_params(args), args.dataset, args.method)


def cmd_evaluate(args, evaluate: ModuleType):
    m = evaluate.run(_params(args), args.dataset, args.method)
    print(f"evaluate {args.dataset}/{args.method}: accuracy {m['accuracy']:.4f} ({m['correct']}/{m['total']})")


def cmd_report(args, report: ModuleType):
    out = report.run(_params(args))
    print(f"report: wrote {', '.join(str(p) for p in out)}")


def cmd_schemas(args, schemas_io: ModuleType):
    for p in schemas_io.write_schemas():
        print(p)


def cmd_validate(args, spec: ModuleType):
    p = _params(args)
    print(f"{args.params}: ok (profile {p.profile}, datasets {', '.join(p.datasets)}, methods {', '.join(p.experiment.methods)})")


def cmd_use_profile(args, profiles: ModuleType):
    dest = profiles.use_profile(args.name, args.params)
    print(f"{dest}: now the {args.name!r} profile")


def cmd_estimate(args, teach: ModuleType):
    teach.estimate(_params(args), args.dataset)


@dataclass(frozen=True)
class Command:
    module: str  # the module that runs the command, imported only when it runs
    handler: Callable[[argparse.Namespace, ModuleType], None]  # called with the imported module
    help: str
    needs: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "prepare": Command("pipeline.stages.prepare", cmd_prepare, "canonical examples per split", ("dataset",)),
    "teach": Command("pipeline.stages.teach", cmd_teach, "teacher records (replay or live teacher)", ("dataset",)),
    "assemble": Command("pipeline.stages.assemble", cmd_assemble, "training rows of one method", ("dataset", "method")),
    "pretrain": Command("pipeline.stages.train", cmd_pretrain, "stage 1: train on self-evaluations (two-stage methods)",
                        ("dataset", "method")),
    "train": Command("pipeline.stages.train", cmd_train, "train the student (stage 2 for two-stage methods)",
                     ("dataset", "method")),
    "evaluate": Command("pipeline.stages.evaluate", cmd_evaluate, "generate on the test split, score, log to MLflow",
                        ("dataset", "method")),
    "report": Command("pipeline.stages.report", cmd_report, "results table from the metrics files"),
    "estimate": Command("pipeline.stages.teach", cmd_estimate,
                        "requests, tokens and cost of the live teacher, before sending anything", ("dataset",)),
    "schemas": Command("pipeline.schemas_io", cmd_schemas, "regenerate schemas/*.schema.json from the models"),
    "validate": Command("pipeline.spec", cmd_validate, "validate params.yaml"),
    "use-profile": Command("pipeline.profiles", cmd_use_profile, "copy profiles/<name>.yaml over params.yaml"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the spec (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, c in COMMANDS.items():
        p = sub.add_parser(name, help=c.help)
        for n in c.needs:
            p.add_argument(f"--{n}", required=True)
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
