"""The multi-task objective: alpha * (token-mean CE of the predict: half) + (1 - alpha) * (token-mean CE
of the explain: half), the official two-pass loss, computed with vocabulary logits only at target
positions (``forward: separate``) or in one pass over both halves (``forward: joint``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def scales_decoder_outputs(config) -> bool:
    """Whether the model's own forward multiplies the decoder output by ``d_model ** -0.5`` before
    ``lm_head``: the rule of the installed transformers, not a guess from the tying.

    transformers >= 5 keeps the switch in ``config.scale_decoder_outputs`` (True only for the original
    T5 checkpoints, whose ``lm_head`` is the input embedding; False for every t5-v1_1 / flan-t5) and
    sets ``tie_word_embeddings`` to True whatever the checkpoint says. Older versions scale exactly
    when ``tie_word_embeddings`` is true."""
    flag = getattr(config, "scale_decoder_outputs", None)
    if flag is not None:
        return bool(flag)
    return bool(getattr(config, "tie_word_embeddings", True))


def _token_ce(model, input_ids, labels, pad_id):
    """Summed token cross entropy and the number of target tokens.

    Unwrapped models run the encoder and decoder, then ``lm_head`` and the loss on the non-pad
    target positions only (the predict: labels are a few tokens; computing vocabulary logits for
    every padded position is most of the waste). A DDP-wrapped model goes through its own forward so
    that gradients are synchronised."""
    attn = (input_ids != pad_id).long()
    core = getattr(model, "module", model)
    dec_in = core._shift_right(labels.masked_fill(labels == -100, pad_id))
    keep = labels != -100
    if core is not model:
        logits = model(input_ids=input_ids, attention_mask=attn, decoder_input_ids=dec_in).logits
        ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return ce, keep.sum()
    enc = core.encoder(input_ids=input_ids, attention_mask=attn).last_hidden_state
    dec = core.decoder(input_ids=dec_in, encoder_hidden_states=enc, encoder_attention_mask=attn).last_hidden_state
    h = dec[keep]
    if scales_decoder_outputs(core.config):  # original T5 only; never t5-v1_1 / flan-t5
        h = h * (core.model_dim ** -0.5)
    logits = core.lm_head(h)
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum"), keep.sum()


def _joint_ce(model, input_ids, labels, pad_id):
    """Per-token cross entropy of one forward pass over both halves (for ``forward: joint``)."""
    attn = (input_ids != pad_id).long()
    core = getattr(model, "module", model)
    dec_in = core._shift_right(labels.masked_fill(labels == -100, pad_id))
    logits = model(input_ids=input_ids, attention_mask=attn, decoder_input_ids=dec_in).logits
    ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return ce.view(labels.shape)


def multitask_loss(model, batch: dict, alpha: float, pad_id: int, forward: str, denoms: tuple | None = None):
    """alpha * mean CE of the predict half + (1 - alpha) * mean CE of the explain half, each a token
    mean over its own half (like the reference's two passes); label loss alone without rationales.

    ``denoms = (predict tokens, explain tokens)`` of a larger (global) batch this one is a part of
    (data parallel): each half's summed CE is then divided by those counts, so that the parts' losses
    add up to the loss of the whole batch; the explain weight applies when the whole batch has
    rationales, even if this part has none. Without ``denoms``: this batch's own counts."""
    p_in, p_lab = batch["pred_input_ids"], batch["pred_labels"]
    if "expl_input_ids" not in batch:
        ce, n = _token_ce(model, p_in, p_lab, pad_id)
        l_pred = ce / (n if denoms is None else denoms[0])
        if denoms is None or not denoms[1]:
            return l_pred, l_pred.detach(), None
        return alpha * l_pred, l_pred.detach(), torch.zeros((), device=l_pred.device)
    e_in, e_lab = batch["expl_input_ids"], batch["expl_labels"]
    if forward == "joint":
        n_in = max(p_in.shape[1], e_in.shape[1])
        n_lab = max(p_lab.shape[1], e_lab.shape[1])
        inp = torch.cat([F.pad(p_in, (0, n_in - p_in.shape[1]), value=pad_id), F.pad(e_in, (0, n_in - e_in.shape[1]), value=pad_id)])
        lab = torch.cat([F.pad(p_lab, (0, n_lab - p_lab.shape[1]), value=-100), F.pad(e_lab, (0, n_lab - e_lab.shape[1]), value=-100)])
        b = p_in.shape[0]
        ce_all = _joint_ce(model, inp, lab, pad_id)
        n_p, n_e = ((lab[:b] != -100).sum(), (lab[b:] != -100).sum()) if denoms is None else denoms
        l_pred = ce_all[:b].sum() / n_p
        l_expl = ce_all[b:].sum() / n_e
    else:
        ce_p, n_p = _token_ce(model, p_in, p_lab, pad_id)
        ce_e, n_e = _token_ce(model, e_in, e_lab, pad_id)
        if denoms is not None:
            n_p, n_e = denoms
        l_pred, l_expl = ce_p / n_p, ce_e / n_e
    return alpha * l_pred + (1 - alpha) * l_expl, l_pred.detach(), l_expl.detach()
