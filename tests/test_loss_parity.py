"""Our multi-task loss is the official one for every way a student is made.

The official objective (Distilling step-by-step's ``TaskPrefixTrainer``, kept by Mind's Mirror) is
``alpha * model(**predict).loss + (1 - alpha) * model(**explain).loss``: the model's own forward,
whatever its output scaling. ``forward: separate`` re-implements the head (vocabulary logits only at
target positions), so it must follow the model's own rule for scaling the decoder output; under
transformers 5 that rule is ``config.scale_decoder_outputs``, while ``tie_word_embeddings`` is always
True. Four students, both forward modes, to 1e-5:

1. a checkpoint in the original t5-v1_1 Hub layout (own ``lm_head``, ``tie_word_embeddings: false``)
   loaded through the real ``from_pretrained`` path;
2. an original-T5-style checkpoint (``lm_head`` tied to ``shared``, decoder output scaled);
3. a ``from_config`` student (the offline profile);
4. a stage-1 checkpoint saved by the train stage and reloaded (which must also generate the same
   tokens as the model that was trained).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

from pipeline.core.errors import PipelineError
from pipeline.core.spec_tables import StudentSpec
from pipeline.student.batches import encode_rows
from pipeline.student.decode import decode
from pipeline.training.loop import LoopConfig, train
from pipeline.training.loss import multitask_loss, scales_decoder_outputs
from pipeline.student.model import build_model
from support.tiny import rand_batch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOKENIZER = SHARED / "models/t5-tokenizer"
SHRINK = dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2, dropout_rate=0.0)
ALPHA = 0.3
TOL = 1e-5


def v11_config(**extra) -> dict:
    """The real google/t5-v1_1-small config.json, shrunk (its ``tie_word_embeddings: false`` kept)."""
    cfg = json.loads((SHARED / "models/t5-v1_1-small-config/config.json").read_text())
    assert cfg["tie_word_embeddings"] is False
    cfg.update(SHRINK, **extra)
    return cfg


def spec(student, **kw) -> StudentSpec:
    return StudentSpec(id=str(student), tokenizer=str(TOKENIZER), **kw)


def write_checkpoint(d: Path, raw_config: dict, tied_head: bool, seed: int = 0) -> Path:
    """A checkpoint as the Hub serves it: ``config.json`` exactly ``raw_config``, safetensors weights
    with (t5-v1_1) or without (original T5: ``lm_head`` is ``shared``) a separate ``lm_head``."""
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(**raw_config))
    if not tied_head:
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    model.save_pretrained(d)
    (d / "config.json").write_text(json.dumps(raw_config, indent=2))
    return d


def batch(seed=1):
    return rand_batch(seed, pad_expl_inputs=True)


def official(model, b) -> float:
    """alpha * model(**pred).loss + (1 - alpha) * model(**expl).loss, the model's own forward."""
    att = lambda x: (x != 0).long()  # noqa: E731
    lp = model(input_ids=b["pred_input_ids"], attention_mask=att(b["pred_input_ids"]), labels=b["pred_labels"]).loss
    le = model(input_ids=b["expl_input_ids"], attention_mask=att(b["expl_input_ids"]), labels=b["expl_labels"]).loss
    return float(ALPHA * lp + (1 - ALPHA) * le)


def max_parity_diff(model) -> float:
    model.eval()
    diffs = []
    with torch.no_grad():
        for seed in (1, 2, 3):
            b = batch(seed)
            ref = official(model, b)
            for mode in ("separate", "joint"):
                diffs.append(abs(float(multitask_loss(model, b, ALPHA, 0, mode)[0]) - ref))
            # the label-only loss (standard fine-tuning / distillation) too
            lab = {k: v for k, v in b.items() if k.startswith("pred")}
            att = (lab["pred_input_ids"] != 0).long()
            ref_l = float(model(input_ids=lab["pred_input_ids"], attention_mask=att, labels=lab["pred_labels"]).loss)
            diffs.append(abs(float(multitask_loss(model, lab, ALPHA, 0, "separate")[0]) - ref_l))
    return max(diffs)


def test_a_t5_v1_1_checkpoint_loaded_from_pretrained(tmp_path):
    d = write_checkpoint(tmp_path / "t5-v1_1", v11_config(), tied_head=False)
    model = build_model(spec(d))
    # the trap: transformers 5 says "tied" for every T5, yet this one neither ties nor scales
    assert model.config.tie_word_embeddings is True and scales_decoder_outputs(model.config) is False
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert max_parity_diff(model) <= TOL


def test_an_original_t5_checkpoint_that_scales(tmp_path):
    raw = v11_config(tie_word_embeddings=True, feed_forward_proj="relu", is_gated_act=False)
    d = write_checkpoint(tmp_path / "t5-orig", raw, tied_head=True)
    model = build_model(spec(d))
    assert scales_decoder_outputs(model.config) is True
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    assert max_parity_diff(model) <= TOL


def test_a_from_config_student(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(v11_config()))
    model = build_model(spec(d, from_config=True))
    assert scales_decoder_outputs(model.config) is False
    assert max_parity_diff(model) <= TOL


def test_a_stage1_checkpoint_saved_and_reloaded_trains_and_generates_the_same(tmp_path, capfd):
    from pipeline.stages.train import _save

    d = write_checkpoint(tmp_path / "t5-v1_1", v11_config(), tied_head=False)
    s = spec(d)
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    model = build_model(s)
    rows = [{"input": f"q {i}: {i} plus {i + 1}?", "label": str(2 * i + 1), "rationale": f"{i} + {i + 1} = {2 * i + 1}"}
            for i in range(8)]
    enc = encode_rows(tok, rows, 64, 32)
    cfg = LoopConfig(lr=1e-2, batch_size=4, grad_accum=1, alpha=ALPHA, epochs=2, max_steps=None, weight_decay=0.0,
                     seed=0, device="cpu", bf16=False, forward="separate")
    model, _ = train(model, enc, cfg, tok.pad_token_id)
    out = tmp_path / "stage1"
    _save(model, tok, out)
    capfd.readouterr()
    reloaded = build_model(s, init_dir=out)
    # silent: transformers' "specifies to tie shared.weight to lm_head.weight ... update the config with
    # `tie_word_embeddings=False`" does not apply to a checkpoint whose config says so already
    said = capfd.readouterr()
    assert "tie" not in said.err + said.out, said.err
    assert scales_decoder_outputs(reloaded.config) is False
    for name, t in model.state_dict().items():
        assert torch.equal(t, reloaded.state_dict()[name]), name
    assert max_parity_diff(reloaded) <= TOL
    texts = [r["input"] for r in rows]
    assert decode(model, tok, texts, 4, 12, 64, "cpu") == decode(reloaded, tok, texts, 4, 12, 64, "cpu")


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    # a t5-v1_1 config whose checkpoint lacks its lm_head: transformers would tie it to `shared`
    d = write_checkpoint(tmp_path / "no-head", v11_config(), tied_head=True)
    with pytest.raises(PipelineError, match=r"weights do not match the config: 1 parameter\(s\) missing .*lm_head"):
        build_model(spec(d))
    # a config with one more layer than the weights: transformers would re-initialise it
    d = write_checkpoint(tmp_path / "short", v11_config(), tied_head=False)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(num_layers=3, num_decoder_layers=3)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PipelineError, match=r"missing from the checkpoint, e\.g\. decoder\.block\.2"):
        build_model(spec(d))
