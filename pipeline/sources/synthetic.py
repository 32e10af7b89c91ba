"""The synthetic source: seeded SVAMP-format word problems (``kind: synthetic``) for the sandbox.

Each question is a short story about one person and one kind of object: a start (``Mia has 7
shells.``, or ``Mia has 3 boxes with 4 shells in each box.``, a multiplication), then one sentence
per further step (buys N more: ``+``; sells N: ``-``; ends up with N times as many: ``*``), then
the question. The label is the SVAMP equation of the chain,
``( ( 7 + 4 ) - 2 )``: every value on the way is a whole number >= 0, and a question needs
``min_steps`` to ``max_steps`` operations. The rows are SVAMP Hub rows (``ID``, ``Body``,
``Question``, ``Equation``, ``Answer``), read by the svamp task's own row hook.

Each split draws from its own generator (seeded by the source's ``seed`` and the split's name), so
the train questions do not depend on ``test``; a test question that is also a train question is
drawn again. The same settings give the same rows, byte for byte.
"""
from __future__ import annotations

import random

from ..core.errors import PipelineError
from ..core.spec import SyntheticSource

NAMES = (("Tom", "He"), ("Mia", "She"), ("Sam", "He"), ("Ana", "She"), ("Leo", "He"), ("Zoe", "She"),
         ("Max", "He"), ("Ivy", "She"), ("Ben", "He"), ("Eva", "She"), ("Jack", "He"), ("Lily", "She"))
OBJECTS = ("apples", "marbles", "stickers", "pencils", "cookies", "cards", "shells", "coins", "stamps", "books")
CONTAINERS = ("boxes", "bags", "jars", "packs", "baskets")
START = "{name} has {n} {obj}."
START_MUL = "{name} has {a} {box} with {b} {obj} in each {one}."
# One wording per operation, of the same shape: the student has to learn to read the numbers in order
# and the verb of each step, not paraphrases (probes on 2 cores: three wordings per operation learnt
# less in the same 300 steps, 22% against 28-29% test accuracy question -> equation).
STEPS = {
    "+": ("{He} buys {n} more {obj}.",),
    "-": ("{He} sells {n} {obj}.",),
    "*": ("{He} ends up with {n} times as many.",),
}
QUESTIONS = ("How many {obj} does {name} have now?",)
FACTORS = (2, 3)  # `*` keeps the numbers small
MAX_TRIES = 1000  # draws per question before the settings are declared too narrow


def generate(source: SyntheticSource) -> dict[str, list[dict]]:
    """split -> SVAMP Hub rows (``train`` and ``test``), as the settings give them."""
    out: dict[str, list[dict]] = {}
    seen: set[str] = set()
    for split, n in (("train", source.train), ("test", source.test)):
        rng = random.Random(f"synthetic:{source.seed}:{split}")
        rows = out[split] = []
        for i in range(n):
            for _ in range(MAX_TRIES):
                row = _question(rng, source)
                text = f"{row['Body']} {row['Question']}"
                if text not in seen:
                    break
            else:
                raise PipelineError(f"synthetic source: cannot draw {n} distinct {split} questions with these settings "
                                    f"(got {i}): raise max_number or max_steps, or allow more operators")
            seen.add(text)
            rows.append({"ID": f"syn-{split}-{i:05d}", **row})
    return out


def _cap(source: SyntheticSource) -> int:
    """The largest value a step may reach."""
    return 10 * source.max_number


def _question(rng: random.Random, source: SyntheticSource) -> dict:
    ops = list(source.operators)
    steps = rng.randint(source.min_steps, source.max_steps)
    name, he = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    words = {"name": name, "He": he, "he": he.lower(), "obj": obj}
    cap, top = _cap(source), source.max_number
    for _ in range(MAX_TRIES):  # a start, then `steps` operations, each feasible on the value so far
        used: set[int] = set()  # each number of a question is stated once: a wrong operand is never a right one

        def pick(lo: int, hi: int, among: tuple = ()):
            free = [n for n in (among or range(lo, hi + 1)) if lo <= n <= hi and n not in used]
            n = rng.choice(free) if free else None
            used.add(n)
            return n

        sentences, done = [], 0
        if "*" in ops and rng.random() < 1 / len(ops):
            a, b = pick(2, top), pick(2, top)
            box = rng.choice(CONTAINERS)
            sentences.append(START_MUL.format(a=a, b=b, box=box, one=box[:-2] if box.endswith("xes") else box[:-1], **words))
            value, equation, done = a * b, f"( {a} * {b} )", 1
        else:
            value = pick(1, top)
            sentences.append(START.format(n=value, **words))
            equation = str(value)
        multiplied = done == 1
        while done < steps:
            op = rng.choice(ops)
            if op == "+":
                n = pick(1, min(top, cap - value))
            elif op == "-":
                n = pick(1, min(top, value))
            else:
                n = None if multiplied else pick(1, cap // max(value, 1), FACTORS)
            if n is None:  # not here: this draw is abandoned
                break
            value = {"+": value + n, "-": value - n, "*": value * n}[op]
            multiplied |= op == "*"
            sentences.append(rng.choice(STEPS[op]).format(n=n, **words))
            equation = f"( {equation} {op} {n} )"
            done += 1
        if done == steps:
            break
    else:
        raise PipelineError(f"synthetic source: no {steps}-step question with operators {' '.join(ops)} and "
                            f"max_number {top}: allow more operators or fewer steps")
    return {"Body": " ".join(sentences), "Question": rng.choice(QUESTIONS).format(**words),
            "Equation": equation, "Answer": value, "Type": f"{steps}-step"}

