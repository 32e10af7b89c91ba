"""The calibration ``python -m pipeline forecast`` reads: a student's training and decoding throughput on
this device, written by ``benchmarks/bench_train.py --calibrate FILE --student ID`` as a ``Throughput``
(``schemas/throughput.schema.json``). Training is the bench's ``ours(separate)`` figure; decoding is
timed here with ``generate`` on the bench's inputs, each decode forced to a fixed length (a random model
would stop anywhere), at the selection batch size."""
from __future__ import annotations

import platform
import time
from datetime import date
from pathlib import Path

import torch

from pipeline.core.artifacts import write_model
from pipeline.core.records_forecast import Throughput

ANSWER_TOKENS = 16  # the bench's longest label (15) + EOS: an SVAMP equation; CQA / ANLI labels are shorter
RATIONALE_TOKENS = 128  # about the bench's mean rationale (95) and its longest (160)


def decode_rate(model, inputs: list[list[int]], new_tokens: int, batch: int, cuda: bool, pad: int = 0) -> float:
    """Greedy decodes per second of ``inputs``, each forced to ``new_tokens`` tokens (bf16 autocast on CUDA)."""
    device = "cuda" if cuda else "cpu"
    model.to(device).eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def run(rows):
        n = max(map(len, rows))
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        ids = ids.to(device)
        with torch.no_grad(), autocast:
            model.generate(input_ids=ids, attention_mask=(ids != pad).long(), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, num_beams=1)

    run(inputs[:batch])  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(inputs), batch):
        run(inputs[i: i + batch])
    if cuda:
        torch.cuda.synchronize()
    return len(inputs) / (time.perf_counter() - t0)


def write_calibration(path: str, student: str, cuda: bool, device_name: str, params: int, train_eps: float,
                      model, inputs: list[list[int]], batch: int, command: str) -> Throughput:
    answers = decode_rate(model, inputs, ANSWER_TOKENS, batch, cuda)
    rationales = decode_rate(model, inputs, RATIONALE_TOKENS, batch, cuda)
    th = Throughput(student=student, device="cuda" if cuda else "cpu", device_name=device_name,
                    precision="bf16" if cuda else "fp32", parameters=params, train_examples_per_s=round(train_eps, 3),
                    answer_decodes_per_s=round(answers, 3), rationale_decodes_per_s=round(rationales, 3),
                    lengths=(f"bench_train.py's synthetic rows (input 40-200 tokens, label 3-15, rationale 30-160), batch "
                             f"16 for training; decodes forced to {ANSWER_TOKENS} (answers) and {RATIONALE_TOKENS} "
                             f"(rationales) new tokens, {batch} per batch"),
                    source="measured", measured=f"{device_name} ({platform.node() or 'unnamed host'}), {date.today()}",
                    command=command)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_model(path, th)
    return th
