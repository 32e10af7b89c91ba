"""Training throughput of our student loop (pipeline/student/loop.py) against a reference recipe built
like the official Mind's Mirror / Distilling-step-by-step code, on the same model and the same data.

Variants (each in its own child process, so peak memory / peak RSS and global torch flags are per run):

* ``reference``      transformers ``Seq2SeqTrainer`` with a ``compute_loss`` doing two forward passes
                     (``predict:`` half and ``explain:`` half, each with ``labels=`` so the model computes
                     its own token-mean CE), loss = alpha*pred + (1-alpha)*expl; a DataCollatorForSeq2Seq-style
                     collator padding each half to its batch maximum (labels with -100, decoder_input_ids from
                     the labels), random sampling (no length grouping); HF defaults otherwise (AdamW as
                     ``optim``'s default, linear decay, max_grad_norm 1.0); ``bf16=True`` on CUDA, fp32 on CPU;
                     no eval, no saving, no logging.
* ``ours(joint)``    ``pipeline.student.loop.train`` with ``forward="joint"`` (one forward over both halves).
* ``ours(separate)`` the same with ``forward="separate"`` (two forwards).

Same lr (5e-5), batch size, weight decay 0, seed and initial weights. The first ``--warmup`` optimizer steps
are not timed: a global optimizer step post-hook synchronises CUDA and starts the clock after step ``warmup``
and stops it after step ``warmup + steps``, so each variant is timed over exactly ``--steps`` full iterations.

Data: synthetic token-id rows (no tokenizer needed), fixed seed: input 40..200 tokens (``predict: ``/``explain: ``
prefix + question + eos), label 3..15 tokens, rationale 30..160 tokens, ids in [2, 32000).

    # CPU (a small config)
    .venv/bin/python benchmarks/bench_train.py --config builtin:tiny --rows 256 --steps 20 --threads 1
    # GPU (T5-base)
    cd benchmarks && PYTHONPATH=.. python3 bench_train.py --config builtin:base --rows 2048 --steps 60 --warmup 10

Imports only torch, transformers (+ accelerate, which Trainer needs) and pipeline.student.{loop,batches}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

from pipeline.student.batches import Encoded, length_grouped_batches  # noqa: E402

DEFAULT_CONFIG = str(ROOT.parent / "shared" / "models" / "t5-v1_1-base-config" / "config.json")
VARIANTS = {"reference": "reference", "joint": "ours(joint)", "separate": "ours(separate)"}
PAD, EOS = 0, 1
PRED_PREFIX, EXPL_PREFIX = [9689, 10], [3209, 10]  # t5 sentencepiece ids of "predict:" / "explain:"

_T5_V1_1 = dict(
    architectures=["T5ForConditionalGeneration"], model_type="t5", feed_forward_proj="gated-gelu",
    dense_act_fn="gelu_new", is_gated_act=True, dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, vocab_size=32128, pad_token_id=0,
    eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False, is_encoder_decoder=True, use_cache=True,
)
BUILTIN = {
    "base": dict(_T5_V1_1, d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "small": dict(_T5_V1_1, d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "large": dict(_T5_V1_1, d_model=1024, d_ff=2816, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24),
    "tiny": dict(_T5_V1_1, d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2),
}


# ----------------------------------------------------------------------------------------------- data / model
def synthetic(rows: int, seed: int) -> Encoded:
    """Rows like tokenised SVAMP/CQA questions with a CoT rationale (every row has one)."""
    rng = random.Random(seed)
    ids = lambda n: [rng.randrange(2, 32000) for _ in range(n)]  # noqa: E731
    p_in, p_t, e_in, e_t = [], [], [], []
    for _ in range(rows):
        q = ids(rng.randint(40, 200) - len(PRED_PREFIX) - 1)
        p_in.append(PRED_PREFIX + q + [EOS])
        e_in.append(EXPL_PREFIX + q + [EOS])
        p_t.append(ids(rng.randint(3, 15) - 1) + [EOS])
        e_t.append(ids(rng.randint(30, 160) - 1) + [EOS])
    return Encoded(p_in, p_t, e_in, e_t)


def load_config(spec: str) -> dict:
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN:
            raise SystemExit(f"--config builtin:{name}: unknown (one of {', '.join(BUILTIN)})")
        return dict(BUILTIN[name])
    p = Path(spec)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise SystemExit(f"--config {spec}: no such file (use builtin:base|small|tiny where ../shared is absent)")
    return json.loads(p.read_text())


def build_model(cfg: dict):
    """Random T5 from the config, tied like the t5-v1_1 checkpoints (encoder/decoder input embeddings are
    ``model.shared``; ``lm_head`` separate). Same weights in every variant (seed 0)."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(**cfg)
    # transformers 5.x forces T5Config.tie_word_embeddings=True in __post_init__ (keeping the raw value only
    # as scale_decoder_outputs); set it back afterwards, as pipeline/student/model.py does
    config.tie_word_embeddings = bool(cfg.get("tie_word_embeddings", True))
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    model.encoder.embed_tokens = model.shared
    model.decoder.embed_tokens = model.shared
    if not config.tie_word_embeddings and model.lm_head.weight is model.shared.weight:
        raise SystemExit("lm_head is tied to the shared embedding although tie_word_embeddings is false")
    return model


def param_counts(model) -> dict:
    uniq = lambda mod: {id(p): p for p in mod.parameters()}  # noqa: E731
    allp = uniq(model)
    shared = {id(p) for p in model.shared.parameters()}
    enc = sum(p.numel() for i, p in uniq(model.encoder).items() if i not in shared)
    dec = sum(p.numel() for i, p in uniq(model.decoder).items() if i not in shared)
    head = sum(p.numel() for i, p in uniq(model.lm_head).items() if i not in shared)
    return {"total": sum(p.numel() for p in allp.values()), "encoder": enc, "decoder": dec + head}


# ----------------------------------------------------------------------------------------------- timing window
class Window:
    """Counts optimizer steps (global post-hook, fires for any torch optimizer, fused included); the clock
    runs from the end of step ``warmup`` to the end of step ``warmup + steps``."""

    def __init__(self, warmup: int, steps: int, cuda: bool):
        self.warmup, self.steps, self.cuda = warmup, steps, cuda
        self.n, self.t0, self.t1, self.active = 0, None, None, False
        self.c0 = self.c1 = None  # process CPU time (all threads), a contention-robust second clock
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.handle = register_optimizer_step_post_hook(self._hook)

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _hook(self, opt, args, kwargs) -> None:
        self.n += 1
        if self.n == self.warmup:
            self.t0, self.c0, self.active = self._now(), time.process_time(), True
        elif self.n == self.warmup + self.steps:
            self.t1, self.c1, self.active = self._now(), time.process_time(), False

    @property
    def seconds(self) -> float:
        if self.t0 is None or self.t1 is None:
            raise RuntimeError(f"timing window not closed: {self.n} optimizer steps seen")
        return self.t1 - self.t0


# ----------------------------------------------------------------------------------------------- variants
def run_ours(model, enc: Encoded, a, forward: str, device: str, win: Window) -> dict:
    from pipeline.training.loop import LoopConfig, train

    total = a.warmup + a.steps
    epochs = math.ceil(total * a.batch_size / len(enc)) + 1
    cfg = LoopConfig(lr=a.lr, batch_size=a.batch_size, grad_accum=1, alpha=a.alpha, epochs=epochs, max_steps=total,
                     weight_decay=0.0, seed=a.seed, device=device, bf16=True, forward=forward,
                     log_every=10**9, eval_every=0, save_every_steps=0)
    _, res = train(model, enc, cfg, PAD)
    # the rows of the timed steps: batches warmup .. warmup+steps-1 of the loop's own (deterministic) order
    order, epoch = [], 0
    while len(order) < total:
        order += length_grouped_batches(enc, a.batch_size, a.seed, epoch)
        epoch += 1
    nonpad = padded = examples = 0
    for idx in order[a.warmup:total]:
        li = [len(enc.pred_input[i]) for i in idx]; lt = [len(enc.pred_target[i]) for i in idx]
        ei = [len(enc.expl_input[i]) for i in idx]; et = [len(enc.expl_target[i]) for i in idx]
        nonpad += sum(li) + sum(lt) + sum(ei) + sum(et)
        b = len(idx)
        if forward == "joint":
            padded += 2 * b * (max(max(li), max(ei)) + max(max(lt), max(et)))
        else:
            padded += b * (max(li) + max(lt) + max(ei) + max(et))
        examples += b
    enc_tok = sum(len(enc.pred_input[i]) + len(enc.expl_input[i]) for idx in order[a.warmup:total] for i in idx)
    return {"examples": examples, "tokens": nonpad, "enc_tokens": enc_tok, "dec_tokens": nonpad - enc_tok,
            "padded": padded, "final_loss": res.history[-1]["loss"] if res.history else float("nan"),
            "optimizer": "torch AdamW" + (" (fused)" if device == "cuda" else " (foreach)")}


class Seq2SeqPadCollator:
    """What the official TaskPrefixDataCollator does through DataCollatorForSeq2Seq, without a tokenizer:
    each half padded on the right to its own batch maximum (input_ids with pad, attention_mask, labels with
    -100) and ``decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)``."""

    def __init__(self, model, pad_id: int):
        self.model, self.pad_id = model, pad_id

    def _half(self, inputs: list, labels: list) -> dict:
        n_in, n_lab = max(map(len, inputs)), max(map(len, labels))
        ids = torch.full((len(inputs), n_in), self.pad_id, dtype=torch.long)
        att = torch.zeros((len(inputs), n_in), dtype=torch.long)
        lab = torch.full((len(labels), n_lab), -100, dtype=torch.long)
        for i, (x, y) in enumerate(zip(inputs, labels)):
            ids[i, : len(x)] = torch.tensor(x)
            att[i, : len(x)] = 1
            lab[i, : len(y)] = torch.tensor(y)
        return {"input_ids": ids, "attention_mask": att, "labels": lab,
                "decoder_input_ids": self.model.prepare_decoder_input_ids_from_labels(labels=lab)}

    def __call__(self, features: list, return_tensors=None) -> dict:
        return {"pred": self._half([f["input_ids"] for f in features], [f["labels"] for f in features]),
                "expl": self._half([f["expl_input_ids"] for f in features], [f["aux_labels"] for f in features])}


def run_reference(model, enc: Encoded, a, device: str, win: Window) -> dict:
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    meter = {"examples": 0, "padded": 0, "tokens": [], "enc_tokens": [], "loss": None}

    class TaskPrefixTrainer(Seq2SeqTrainer):
        def __init__(self, alpha: float, **kw):
            super().__init__(**kw)
            self.alpha = alpha

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            pred_outputs = model(**inputs["pred"])
            expl_outputs = model(**inputs["expl"])
            loss = self.alpha * pred_outputs.loss + (1.0 - self.alpha) * expl_outputs.loss
            if win.active:  # counted on-device, read once at the end (no per-step sync added)
                for h in (inputs["pred"], inputs["expl"]):
                    e = h["attention_mask"].sum()
                    meter["enc_tokens"].append(e)
                    meter["tokens"].append(e + (h["labels"] != -100).sum())
                    meter["padded"] += h["input_ids"].numel() + h["labels"].numel()
                meter["examples"] += inputs["pred"]["input_ids"].shape[0]
            meter["loss"] = loss.detach()
            return (loss, {"pred": pred_outputs, "expl": expl_outputs}) if return_outputs else loss

    rows = [{"input_ids": enc.pred_input[i], "labels": enc.pred_target[i], "expl_input_ids": enc.expl_input[i],
             "aux_labels": enc.expl_target[i]} for i in range(len(enc))]
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, remove_unused_columns=False, eval_strategy="no", save_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, max_steps=a.warmup + a.steps,
            learning_rate=a.lr, per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=1,
            weight_decay=0.0, seed=a.seed, bf16=(device == "cuda"), use_cpu=(device != "cuda"),
            dataloader_num_workers=0)
        trainer = TaskPrefixTrainer(alpha=a.alpha, model=model, args=args, train_dataset=rows,
                                    data_collator=Seq2SeqPadCollator(model, PAD))
        trainer.train()
        optim = str(getattr(args.optim, "value", args.optim))
    tokens = int(sum(t.item() for t in meter["tokens"]))
    enc_tok = int(sum(t.item() for t in meter["enc_tokens"]))
    return {"examples": meter["examples"], "tokens": tokens, "enc_tokens": enc_tok, "dec_tokens": tokens - enc_tok,
            "padded": meter["padded"], "final_loss": float(meter["loss"]), "optimizer": f"HF optim={optim}"}


def child(a) -> None:
    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    if a.threads:
        torch.set_num_threads(a.threads)
    enc = synthetic(a.rows, a.seed)
    model = build_model(load_config(a.config))
    counts = param_counts(model)
    win = Window(a.warmup, a.steps, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if a.child == "reference":
        out = run_reference(model, enc, a, device, win)
    else:
        out = run_ours(model, enc, a, a.child, device, win)
    out.update(seconds=win.seconds, cpu_seconds=win.c1 - win.c0, params=counts, device=device,
               peak_mem=torch.cuda.max_memory_allocated() if cuda else
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               tf32=bool(torch.backends.cuda.matmul.allow_tf32))
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------------------- parent
def versions() -> str:
    import transformers

    parts = [f"python {sys.version.split()[0]}", f"torch {torch.__version__}", f"transformers {transformers.__version__}"]
    try:
        import accelerate
        parts.append(f"accelerate {accelerate.__version__}")
    except ImportError:
        parts.append("accelerate MISSING")
    return ", ".join(parts)


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="config.json path or builtin:large|base|small|tiny")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=60, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first (>= 1)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM: 989)")
    ap.add_argument("--variants", default="reference,joint,separate", help="subset/order of reference,joint,separate")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads in each run (CPU; 1 is steadier on a shared machine)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the variant list this many times, round-robin; the table shows each variant's median")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--calibrate", default=None, metavar="FILE",
                    help="write the forecast's calibration (a Throughput: ours(separate) training and timed decodes) here, "
                         "e.g. benchmarks/calibration/t5-v1_1-base-cuda.json; needs --student")
    ap.add_argument("--student", default=None, help="with --calibrate: the student id params.yaml names (google/t5-v1_1-base)")
    ap.add_argument("--decode-rows", type=int, default=256, help="with --calibrate: inputs decoded (at --select-batch-size)")
    ap.add_argument("--select-batch-size", type=int, default=64)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.warmup < 1 or a.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1")
    if a.child:
        return child(a)
    if a.calibrate:
        if not a.student:
            raise SystemExit("--calibrate needs --student (the id params.yaml names, e.g. google/t5-v1_1-base)")
        a.variants = "separate"  # the loop the pipeline trains with
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: unknown {v!r}")
    cfg = load_config(a.config)
    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    dev = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {a.threads or torch.get_num_threads()} torch threads)"
    enc = synthetic(a.rows, a.seed)
    mean = lambda xs: sum(map(len, xs)) / len(xs)  # noqa: E731
    print(f"# {versions()}")
    print(f"# device: {dev}; precision: {'bf16 autocast' if cuda else 'fp32'}")
    print(f"# model: {a.config} (d_model {cfg['d_model']}, d_ff {cfg['d_ff']}, layers {cfg['num_layers']}+"
          f"{cfg.get('num_decoder_layers', cfg['num_layers'])})")
    print(f"# data: {a.rows} synthetic rows, mean lengths input {mean(enc.pred_input):.0f}, label {mean(enc.pred_target):.1f}, "
          f"rationale {mean(enc.expl_target):.0f}; batch {a.batch_size}, lr {a.lr}, alpha {a.alpha}; "
          f"{a.warmup} warm-up + {a.steps} timed steps", flush=True)
    runs: dict = {v: [] for v in variants}
    for rep in range(max(1, a.repeats)):
        for v in variants:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", v] + [
                x for k, val in vars(a).items() if k not in ("child", "variants", "json", "repeats", "calibrate", "student",
                                                             "decode_rows", "select_batch_size") and val is not None
                for x in (f"--{k.replace('_', '-')}", str(val))]
            t = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if p.returncode != 0 or line is None:
                sys.stderr.write(p.stdout[-4000:] + p.stderr[-8000:])
                raise SystemExit(f"variant {v} failed (rc {p.returncode})")
            r = json.loads(line[len("RESULT "):])
            runs[v].append(r)
            print(f"# {VARIANTS[v]}{f' (repeat {rep + 1})' if a.repeats > 1 else ''}: {r['examples'] / r['seconds']:.1f} ex/s; "
                  f"done in {time.perf_counter() - t:.0f}s wall (incl. start-up, model build, warm-up)", flush=True)
    # per variant, the run with the median examples/s
    results = {v: sorted(rs, key=lambda r: r["examples"] / r["seconds"])[(len(rs) - 1) // 2] for v, rs in runs.items()}

    first = next(iter(results.values()))
    pc = first["params"]
    print(f"# params: {pc['total'] / 1e6:.2f}M (encoder stack {pc['encoder'] / 1e6:.2f}M, "
          f"decoder stack + lm_head {pc['decoder'] / 1e6:.2f}M, shared embedding {(pc['total'] - pc['encoder'] - pc['decoder']) / 1e6:.2f}M)")
    peak = a.peak_tflops * 1e12
    head = f"{'variant':<15} {'ex/s':>8} {'tokens/s':>10} {'pad-eff':>7} {'peak mem':>10}"
    head += f" {'MFU 6NT':>8} {'MFU stk':>8}" if cuda else f" {'cpu-s/step':>10}"
    head += f" {'s/step':>8} {'loss':>7}  optimizer"
    print()
    print(head)
    print("-" * len(head))
    for v, r in results.items():
        s = r["seconds"]
        row = f"{VARIANTS[v]:<15} {r['examples'] / s:>8.1f} {r['tokens'] / s:>10.0f} {r['tokens'] / r['padded']:>7.2f} {fmt_bytes(r['peak_mem']):>10}"
        if cuda:
            mfu = 6 * pc["total"] * r["tokens"] / s / peak
            mfu_stk = 6 * (pc["encoder"] * r["enc_tokens"] + pc["decoder"] * r["dec_tokens"]) / s / peak
            row += f" {100 * mfu:>7.1f}% {100 * mfu_stk:>7.1f}%"
        else:
            row += f" {r['cpu_seconds'] / a.steps:>10.3f}"
        row += f" {s / a.steps:>8.4f} {r['final_loss']:>7.3f}  {r['optimizer']}"
        print(row)
    print()
    if "reference" in results:
        ref = results["reference"]
        for v in ("joint", "separate"):
            if v in results:
                r = results[v]
                ex = (r["examples"] / r["seconds"]) / (ref["examples"] / ref["seconds"])
                tk = (r["tokens"] / r["seconds"]) / (ref["tokens"] / ref["seconds"])
                extra = "" if cuda else f"; {ref['cpu_seconds'] / ref['examples'] / (r['cpu_seconds'] / r['examples']):.2f}x by process CPU time"
                print(f"{VARIANTS[v]} / reference = {ex:.2f}x examples/s ({tk:.2f}x tokens/s{extra})")
    if a.calibrate:
        from calibrate import write_calibration

        r = results["separate"]
        if a.threads:
            torch.set_num_threads(a.threads)
        th = write_calibration(a.calibrate, a.student, cuda, dev, pc["total"], r["examples"] / r["seconds"], build_model(cfg),
                               synthetic(a.decode_rows, a.seed + 1).pred_input, a.select_batch_size,
                               "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))
        print(f"calibration {a.calibrate}: {th.train_examples_per_s:g} train rows/s, {th.answer_decodes_per_s:g} answers/s, "
              f"{th.rationale_decodes_per_s:g} rationales/s")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "child"},
                                            "versions": versions(), "device": dev, "results": results, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
