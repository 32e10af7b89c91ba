"""The simulated backend: a teacher of known error rates for SVAMP-format questions (the sandbox).

Per question (``splits``) it writes ``cots`` CoTs as raw text in the svamp answer format, one sentence
per step of the gold equation (post-order: ``Adding 4 apples gives 3 + 4 = 7. Taking away 2 apples
leaves 7 - 2 = 5. The answer is ( ( 3 + 4 ) - 2 ).``). A share ``error_rate`` of them is wrong in
exactly one step, of one kind:

- ``operand``: a number of the question replaced by a nearby one, the step computed right on it;
- ``operator``: a step's operation replaced by another, computed right on it (both visible only
  against the question: together ``spottable_share`` of the wrong CoTs);
- ``arithmetic``: right operands and operation, wrong result (``3 + 4 = 8``), in a step before the
  last; the later steps carry it forward, and the answer equation carries the stated number.

Every wrong CoT's answer differs from the gold answer. Then ``self_evals`` self-evaluations per CoT
(``self_eval_splits``), each ending ``Evaluation result: the given answer is correct.`` or ``wrong.``,
right with probability ``verdict_accuracy``: a right verdict on a wrong CoT points at its wrong step,
a wrong verdict on a correct CoT invents a complaint about a random step, and the others say the
steps match the question and the arithmetic is right. Every text goes through ``make_cot`` /
``make_evaluation``, as recorded ones do. The error kind of each CoT is in its ``source``
(``simulated#2:operand@1``: CoT 2, its step 1 wrong). Each CoT and its evaluations draw from their own
generator, seeded by ``seed``, the question's id and the CoT's index, so the same settings give the
same files, and more CoTs or evaluations leave the first ones as they were.

The usage is simulated: one request per question for its CoTs and one per CoT for its evaluations
(``n`` samples each), tokens counted as the whitespace words of the prompt the live teacher would send
(``prompts/<task>/``) and of the completion, priced at ``price_per_1m_input`` / ``_output``.
"""
from __future__ import annotations

import ast
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional

from ..core.errors import PipelineError
from ..core.records import Example
from ..core.spec import SimulatedTeacher
from ..tasks import Task
from .common import empty_record, make_cot
from .prompts import example_values, load_template

KINDS = ("none", "operand", "operator", "arithmetic")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
SAY = {"+": "Adding {b}{noun} gives {a} + {b} = {c}.", "-": "Taking away {b}{noun} leaves {a} - {b} = {c}.",
       "*": "Multiplying by {b} gives {a} * {b} = {c}.", "/": "Dividing by {b} gives {a} / {b} = {c}."}
DOES = {"+": "adds {b}", "-": "takes {b} away", "*": "multiplies by {b}", "/": "divides by {b}"}
FINE = "Each step uses the numbers of the question, and the arithmetic is right."
VERDICT = "Evaluation result: the given answer is {}."
_NOUN = re.compile(r"\bhow many (\w+)", re.IGNORECASE)

Ref = tuple  # ("num", value) or ("step", index)


@dataclass(frozen=True)
class Step:
    op: str
    left: Ref
    right: Ref


@dataclass(frozen=True)
class Done:
    """One step as a CoT states it: ``a op b = stated`` (``true``: what ``a op b`` is)."""
    a: float
    op: str
    b: float
    true: float
    stated: float


@dataclass(frozen=True)
class Error:
    kind: str  # one of KINDS
    step: Optional[int] = None  # 0-based
    steps: tuple = ()  # the CoT's steps (with the wrong operand or operator)
    slip: Optional[float] = None  # arithmetic: the stated result of ``step``
    side: Optional[str] = None  # operand: "left" / "right"


@dataclass
class SimulatedOutput:
    records: dict  # origin split -> plain teacher records
    usage: dict  # the ``usage`` entry of the teach metrics (``TeacherUsage``)
    error_kinds: dict  # error kind -> CoTs


def simulate(task: Task, teacher: SimulatedTeacher, examples_by_origin: dict[str, list[Example]]) -> SimulatedOutput:
    """Teacher records for ``examples_by_origin`` (aligned with it), their usage and error kinds."""
    cot_tmpl, se_tmpl = load_template(task.name, "cot"), load_template(task.name, "self_eval")
    tokens = {kind: Counter() for kind in ("cot", "self_eval")}
    kinds: Counter = Counter({k: 0 for k in KINDS})
    records: dict[str, list[dict]] = {}
    for origin, exs in examples_by_origin.items():
        recs = records[origin] = []
        for ex in exs:
            rec = empty_record(ex)
            recs.append(rec)
            if ex.split not in teacher.splits:
                continue
            steps = parse_steps(ex.label, ex.id)
            noun = _noun(ex.question)
            values = example_values(task, ex)
            _count(tokens["cot"], cot_tmpl.render(values), "", 1)
            for j in range(teacher.cots):
                rng = random.Random(f"simulated:{teacher.seed}:{ex.id}:{j}")
                err = draw_error(rng, steps, teacher)
                text = cot_text(steps, err, noun)
                evals = []
                if ex.split in teacher.self_eval_splits and teacher.self_evals:
                    erng = random.Random(f"simulated:{teacher.seed}:{ex.id}:{j}:evaluations")
                    evals = [self_evaluation(erng, steps, err, noun, teacher.verdict_accuracy)
                             for _ in range(teacher.self_evals)]
                    _count(tokens["self_eval"], se_tmpl.render({**values, "cot": text}), 0, 1)
                    for e in evals:
                        _count(tokens["self_eval"], "", e, 0)
                _count(tokens["cot"], "", text, 0)
                where = f"simulated#{j}:{err.kind}" + ("" if err.step is None else f"@{err.step + 1}")
                rec["cots"].append(make_cot(task, text, ex, where, "strict", evals))
                kinds[err.kind] += 1
    return SimulatedOutput(records, _usage(teacher, tokens, records, (cot_tmpl, se_tmpl)), dict(kinds))


# --------------------------------------------------------------------------- the gold equation's steps
def parse_steps(label: str, where: str = "") -> tuple[Step, ...]:
    """The steps of an equation of numbers, post-order (``( ( 3 + 4 ) - 2 )``: ``3 + 4``, then ``#0 - 2``)."""
    try:
        tree = ast.parse(label.strip(), mode="eval").body
    except SyntaxError:
        raise PipelineError(f"simulated teacher: question {where!r}: label {label!r} is not an equation") from None
    steps: list[Step] = []

    def walk(node) -> Ref:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ("num", node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return ("num", -node.operand.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            steps.append(Step(_OPS[type(node.op)], left, right))
            return ("step", len(steps) - 1)
        raise PipelineError(f"simulated teacher: question {where!r}: label {label!r} is not an equation of numbers "
                            "with + - * /")

    walk(tree)
    return tuple(steps)


def _apply(op: str, a: float, b: float) -> Optional[float]:
    if op == "/":
        return a / b if b else None
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def run(steps, slip_at: Optional[int] = None, slip: Optional[float] = None) -> Optional[list[Done]]:
    """The steps as stated (a slip replaces one step's result, carried forward); None when a value
    is undefined, negative, or (for whole-number questions) not whole."""
    whole = all(float(r[1]).is_integer() for s in steps for r in (s.left, s.right) if r[0] == "num")
    out: list[Done] = []
    for i, s in enumerate(steps):
        a, b = (r[1] if r[0] == "num" else out[r[1]].stated for r in (s.left, s.right))
        c = _apply(s.op, a, b)
        if c is None or not math.isfinite(c) or c < 0 or (whole and not float(c).is_integer()):
            return None
        out.append(Done(a, s.op, b, c, slip if i == slip_at else c))
    return out


def _final(steps) -> Optional[float]:
    done = run(steps)
    return done[-1].stated if done else None


def draw_error(rng: random.Random, steps: tuple[Step, ...], t: SimulatedTeacher) -> Error:
    """A CoT's error: none with probability 1 - error_rate, else one of the kinds (the drawn one, or the
    next one that this question allows); none when the question allows no error."""
    if not steps or rng.random() >= t.error_rate:
        return Error("none", steps=steps)
    spot = ["operand", "operator"]
    rng.shuffle(spot)
    order = spot + ["arithmetic"] if rng.random() < t.spottable_share else ["arithmetic"] + spot
    gold = _final(steps)
    for kind in order:
        err = {"operand": _operand, "operator": _operator, "arithmetic": _slip}[kind](rng, steps, gold)
        if err is not None:
            return err
    return Error("none", steps=steps)


def _differs(done: Optional[list[Done]], gold: Optional[float]) -> bool:
    return done is not None and gold is not None and not math.isclose(done[-1].stated, gold, abs_tol=1e-6)


def _near(rng: random.Random, v: float, low: float) -> list[float]:
    """Nearby values of ``v`` (1 to 3 away), at least ``low``, in random order."""
    out = [v + d for d in (-3, -2, -1, 1, 2, 3) if v + d >= low] or [max(v, low) + d for d in (1, 2, 3)]
    rng.shuffle(out)
    return out


def _operand(rng, steps, gold) -> Optional[Error]:
    places = [(i, side) for i, s in enumerate(steps) for side in ("left", "right") if getattr(s, side)[0] == "num"]
    rng.shuffle(places)
    for i, side in places:
        v = getattr(steps[i], side)[1]
        for w in _near(rng, v, 1):
            changed = list(steps)
            changed[i] = Step(steps[i].op, *((("num", w), steps[i].right) if side == "left" else (steps[i].left, ("num", w))))
            if _differs(run(changed), gold):
                return Error("operand", i, tuple(changed), side=side)
    return None


def _operator(rng, steps, gold) -> Optional[Error]:
    places = list(range(len(steps)))
    rng.shuffle(places)
    for i in places:
        others = [op for op in ("+", "-", "*", "/") if op != steps[i].op]
        rng.shuffle(others)
        for op in others:
            changed = list(steps)
            changed[i] = Step(op, steps[i].left, steps[i].right)
            if _differs(run(changed), gold):
                return Error("operator", i, tuple(changed))
    return None


def _slip(rng, steps, gold) -> Optional[Error]:
    done = run(steps)
    places = list(range(len(steps) - 1)) or [0]  # a step before the last, so the answer equation shows it
    rng.shuffle(places)
    for i in places:
        for wrong in _near(rng, done[i].true, 0):
            if _differs(run(steps, i, wrong), gold):
                return Error("arithmetic", i, steps, slip=wrong)
    return None


# --------------------------------------------------------------------------- the texts
def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _noun(question: str) -> str:
    m = _NOUN.search(question)
    return f" {m.group(1)}" if m else ""


def equation(steps, err: Error) -> str:
    """The CoT's answer: its steps as one equation; a slipped step is carried as the number it states."""
    def expr(ref: Ref) -> str:
        if ref[0] == "num":
            return _num(ref[1])
        i = ref[1]
        if err.kind == "arithmetic" and i == err.step:
            return _num(err.slip)
        s = steps[i]
        return f"( {expr(s.left)} {s.op} {expr(s.right)} )"

    return expr(("step", len(steps) - 1)) if steps else ""


def cot_text(gold_steps, err: Error, noun: str) -> str:
    steps = err.steps or gold_steps
    done = run(steps, err.step, err.slip) if err.kind == "arithmetic" else run(steps)
    sentences = [SAY[d.op].format(a=_num(d.a), b=_num(d.b), c=_num(d.stated), noun=noun if d.op in "+-" else "")
                 for d in done or []]
    return " ".join(sentences + [f"The answer is {equation(steps, err)}."])


def self_evaluation(rng: random.Random, gold_steps, err: Error, noun: str, accuracy: float) -> str:
    """One self-evaluation of a CoT with error ``err``: right with probability ``accuracy``."""
    right = rng.random() < accuracy
    if err.kind == "none":
        return f"{_complaint(rng, gold_steps, noun)}\n{VERDICT.format('wrong')}" if not right \
            else f"{FINE}\n{VERDICT.format('correct')}"
    if not right:
        return f"{FINE}\n{VERDICT.format('correct')}"
    i, n = err.step, err.step + 1
    if err.kind == "operand":
        ref = getattr(err.steps[i], err.side)
        gold = getattr(gold_steps[i], err.side)
        unit = noun if err.steps[i].op in "+-" else ""
        why = f"Step {n} uses {_num(ref[1])}{unit}, but the question says {_num(gold[1])}."
    elif err.kind == "operator":
        b = _num(run(err.steps)[i].b)
        why = f"Step {n} {DOES[err.steps[i].op].format(b=b)}, but the question {DOES[gold_steps[i].op].format(b=b)}."
    else:
        d = run(gold_steps, i, err.slip)[i]
        why = f"Step {n}: {_num(d.a)} {d.op} {_num(d.b)} is {_num(d.true)}, not {_num(d.stated)}."
    return f"{why}\n{VERDICT.format('wrong')}"


def _complaint(rng: random.Random, steps, noun: str) -> str:
    """An invented error in a random step of a correct CoT."""
    done = run(steps)
    if not done:  # a gold equation with a negative or undefined step: nothing to check against
        return "Step 1 does not match the question."
    i = rng.randrange(len(steps))
    s, d = steps[i], done[i]
    leaves = [r[1] for r in (s.left, s.right) if r[0] == "num"]
    if leaves and rng.random() < 0.5:
        v = rng.choice(leaves)
        return f"Step {i + 1} uses {_num(v)}{noun if s.op in '+-' else ''}, but the question says {_num(_near(rng, v, 1)[0])}."
    return f"Step {i + 1}: {_num(d.a)} {d.op} {_num(d.b)} is {_num(_near(rng, d.true, 0)[0])}, not {_num(d.true)}."


# --------------------------------------------------------------------------- the simulated usage
def _count(c: Counter, prompt: str, completion: str, requests: int) -> None:
    c["requests"] += requests
    c["prompt_tokens"] += len(prompt.split())
    if completion:
        c["completion_tokens"] += len(completion.split())
        c["samples"] += 1


def _usage(t: SimulatedTeacher, tokens: dict[str, Counter], records: dict, templates) -> dict:
    by_kind = {}
    for kind, c in tokens.items():
        if c["samples"]:
            cost = (c["prompt_tokens"] * t.price_per_1m_input + c["completion_tokens"] * t.price_per_1m_output) / 1e6
            by_kind[kind] = {"samples": c["samples"], "requests": c["requests"], "prompt_tokens": c["prompt_tokens"],
                             "completion_tokens": c["completion_tokens"], "cost_usd": round(cost, 6)}
    total = {k: sum(u[k] for u in by_kind.values()) for k in ("samples", "requests", "prompt_tokens", "completion_tokens")}
    cost = round(sum(u["cost_usd"] for u in by_kind.values()), 6)
    cots = [c for recs in records.values() for r in recs for c in r["cots"]]
    return {
        "model": "simulated", "endpoint": "none (simulated teacher)",
        "prompts": {tm.label.rsplit("@", 1)[0]: tm.version for tm in templates},
        "n_per_request": True, "model_check": None, "snapshots": [],
        "samples": total["samples"], "cached_samples": 0, "requests": total["requests"], "http_attempts": 0,
        "rate_limited": 0, "prompt_tokens": total["prompt_tokens"], "completion_tokens": total["completion_tokens"],
        "cost_usd": cost, "total_requests": total["requests"], "total_prompt_tokens": total["prompt_tokens"],
        "total_completion_tokens": total["completion_tokens"], "total_cost_usd": cost, "by_kind": by_kind,
        "quarantined": {"cot": sum(c["status"] != "ok" for c in cots),
                        "self_eval": sum(e["status"] != "ok" for c in cots for e in c["evaluations"])},
    }
