"""One CLI for every stage: ``python -m pipeline <stage> [--dataset D] [--method M]`` (or ``mm``).

Every command validates the whole ``params.yaml`` first; a problem with the user's input is one
line on stderr and exit code 2, and outputs written by earlier stages are left untouched.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import PipelineError


def _params(args):
    from .spec import load_params

    return load_params(args.params)


def cmd_prepare(args):
    from .stages import prepare

    m = prepare.run(_params(args), args.dataset)
    print(f"prepare {args.dataset}: {m['rows']}")


def cmd_teach(args):
    from .stages import teach

    m = teach.run(_params(args), args.dataset)
    for split, s in m["splits"].items():
        acc = "n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}%"
        print(f"teach {args.dataset}/{split}: {s['questions']} questions, {s['cots']} CoTs, "
              f"parse rate {s['parse_rate']}, teacher accuracy {acc} ({s['correct']}/{s['questions']})")


def cmd_assemble(args):
    from .stages import assemble

    m = assemble.run(_params(args), args.dataset, args.method)
    print(f"assemble {args.dataset}/{args.method}: {m}")


def cmd_pretrain(args):
    from .stages import train

    train.run_stage1(_params(args), args.dataset, args.method)


def cmd_train(args):
    from .stages import train

    train.run_stage2(_params(args), args.dataset, args.method)


def cmd_evaluate(args):
    from .stages import evaluate

    m = evaluate.run(_params(args), args.dataset, args.method)
    print(f"evaluate {args.dataset}/{args.method}: accuracy {m['accuracy']:.4f} ({m['correct']}/{m['total']})")


def cmd_report(args):
    from .stages import report

    out = report.run(_params(args))
    print(f"report: wrote {', '.join(str(p) for p in out)}")


def cmd_schemas(args):
    from .schemas_io import write_schemas

    for p in write_schemas():
        print(p)


def cmd_validate(args):
    p = _params(args)
    print(f"{args.params}: ok (profile {p.profile}, datasets {', '.join(p.datasets)}, methods {', '.join(p.experiment.methods)})")


def cmd_use_profile(args):
    from .profiles import use_profile

    dest = use_profile(args.name, args.params)
    print(f"{dest}: now the {args.name!r} profile")


def cmd_estimate(args):
    from .teacher.openai_backend import estimate

    estimate(_params(args), args.dataset)


COMMANDS = {
    "prepare": (cmd_prepare, "canonical examples per split", ("dataset",)),
    "teach": (cmd_teach, "teacher records (replay or live teacher)", ("dataset",)),
    "assemble": (cmd_assemble, "training rows of one method", ("dataset", "method")),
    "pretrain": (cmd_pretrain, "stage 1: train on self-evaluations (two-stage methods)", ("dataset", "method")),
    "train": (cmd_train, "train the student (stage 2 for two-stage methods)", ("dataset", "method")),
    "evaluate": (cmd_evaluate, "generate on the test split, score, log to MLflow", ("dataset", "method")),
    "report": (cmd_report, "results table from the metrics files", ()),
    "estimate": (cmd_estimate, "requests, tokens and cost of the live teacher, before sending anything", ("dataset",)),
    "schemas": (cmd_schemas, "regenerate schemas/*.schema.json from the models", ()),
    "validate": (cmd_validate, "validate params.yaml", ()),
    "use-profile": (cmd_use_profile, "copy profiles/<name>.yaml over params.yaml", ()),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="the spec (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_, needs) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        for n in needs:
            p.add_argument(f"--{n}", required=True)
        if name == "use-profile":
            p.add_argument("name")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    try:
        args.fn(args)
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
