"""The model: transformers' RobertaForMaskedLM built from a config (never downloaded), with SDPA
attention, and `MaskedLM`, the module the trainer calls, which runs the LM head only at the
positions the objective scores. RoBERTa's head (dense + GELU + LayerNorm + a vocab-sized decoder)
is a large share of the FLOPs when it runs at every position; at 15% of positions it is cheap."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from intdim.errors import UserError
from pretrain import attention
from pretrain.config import PADDED_ATTENTION, ModelConfig

LAYER_NORM_EPS = 1e-5  # fairseq's (torch.nn.LayerNorm's default)

PRESETS = {
    # Liu et al. 2019, RoBERTa-base.
    "roberta_base": dict(
        num_layers=12, hidden_size=768, num_heads=12, ffn_size=3072, dropout=0.1,
        attention_dropout=0.1, max_positions=514,
    ),
    # For tests and the demo: seconds per hundred updates on a laptop CPU.
    "roberta_tiny": dict(
        num_layers=2, hidden_size=64, num_heads=2, ffn_size=128, dropout=0.1,
        attention_dropout=0.1, max_positions=514,
    ),
}  # fmt: skip


def resolved(cfg: ModelConfig) -> dict:
    values = dict(PRESETS[cfg.preset])
    for key in values:
        mine = getattr(cfg, key)
        if (key.endswith("dropout") and mine >= 0) or (not key.endswith("dropout") and mine > 0):
            values[key] = mine
    return values


def build_config(cfg: ModelConfig, tokenizer, tokens_per_sample: int):
    from transformers import RobertaConfig

    v = resolved(cfg)
    if v["hidden_size"] % v["num_heads"]:
        raise UserError(
            f"model hidden_size={v['hidden_size']} is not divisible by num_heads={v['num_heads']}"
        )
    pad = tokenizer.pad_token_id
    # RoBERTa numbers positions from padding_idx + 1, so 514 positions hold 512 tokens.
    room = v["max_positions"] - pad - 1
    if tokens_per_sample > room:
        raise UserError(
            f"data.tokens_per_sample={tokens_per_sample} exceeds the model's {room} positions; "
            f"lower it or raise model.max_positions to {tokens_per_sample + pad + 1}"
        )
    return RobertaConfig(
        vocab_size=padded_vocab_size(len(tokenizer), cfg.pad_vocab_to_multiple_of),
        hidden_size=v["hidden_size"],
        num_hidden_layers=v["num_layers"],
        num_attention_heads=v["num_heads"],
        intermediate_size=v["ffn_size"],
        hidden_dropout_prob=v["dropout"],
        attention_probs_dropout_prob=v["attention_dropout"],
        max_position_embeddings=v["max_positions"],
        # fairseq's RoBERTa (which the paper trains) uses LayerNorm's 1e-5; transformers'
        # RobertaConfig defaults to BERT's 1e-12.
        layer_norm_eps=LAYER_NORM_EPS,
        type_vocab_size=1,
        pad_token_id=pad,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="sdpa",
    )


def padded_vocab_size(size: int, multiple: int) -> int:
    """The model's embedding rows: the tokenizer's `size` rounded up to a multiple of `multiple`."""
    return -(-size // multiple) * multiple


def build_model(cfg: ModelConfig, tokenizer, tokens_per_sample: int, seed: int):
    """A freshly initialised RobertaForMaskedLM; the init is drawn from `seed` alone."""
    from transformers import RobertaForMaskedLM

    config = build_config(cfg, tokenizer, tokens_per_sample)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = RobertaForMaskedLM(config)
    finally:
        torch.random.set_rng_state(state)
    return model


IGNORE_INDEX = -100  # a target that adds nothing to the loss (cross_entropy's default)


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The MLM loss: cross-entropy summed over the scored rows, in fp32 (bf16 logits under
    autocast are upcast first). Rows whose target is IGNORE_INDEX add exactly 0 to the loss and
    get a zero gradient; they pad the scored rows to a fixed count (`static_shapes=true`)."""
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


class MaskedLM(nn.Module):
    """Logits at chosen positions: forward(input_ids, attention_mask, positions) -> (n, vocab),
    or, given `targets`, their summed_cross_entropy (a scalar).

    `positions` are flat indices into input_ids.view(-1), distinct (the objectives give them
    sorted and unique, then maybe unscored filler rows). The whole LM head (dense, GELU,
    LayerNorm, decoder) runs on those rows only. `attention_mask=None` means no padding:
    transformers then passes no mask to SDPA, which lets a GPU use the FlashAttention kernel (any
    mask rules it out). Taking `targets` puts the loss inside whatever wraps this module
    (torch.compile then fuses the fp32 cast, log-softmax and gather with the LM head;
    `compile_loss`); the maths is the same. This is the module that DDP, the subspace wrapper and
    torch.compile wrap; `hf` is the plain transformers model that is saved. Building it switches
    the model's attention to `pretrain.attention` (same maths; faster CPU training with dropout
    and padding; `padded_attention="segments"`: a padded batch's attention on a GPU as varlen
    segments, `attention.segment_attention`); the switch is not saved, checkpoints load with
    transformers' default attention."""

    def __init__(self, hf_model: nn.Module, padded_attention: str = "mask") -> None:
        super().__init__()
        self.hf = hf_model
        if padded_attention not in PADDED_ATTENTION:
            raise UserError(f"unknown padded_attention {padded_attention!r}; choose one of: "
                            f"{', '.join(PADDED_ATTENTION)}")  # fmt: skip
        segments = padded_attention == "segments"
        hf_model.config._attn_implementation = attention.register(segments=segments)

    def forward(self, input_ids, attention_mask, positions, targets=None):
        hidden = self.hf.roberta(input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = _TakeRows.apply(hidden.reshape(-1, hidden.shape[-1]), positions)
        logits = self.hf.lm_head(hidden)
        return logits if targets is None else summed_cross_entropy(logits, targets)


class _TakeRows(torch.autograd.Function):
    """x.index_select(0, rows) for distinct rows. index_select's backward is a scatter-add of
    the gradient (a slow, unvectorised index_add_ on CPU: ~80 ms a batch in the profile); with
    distinct rows a plain index_copy_ into zeros gives the same gradient."""

    @staticmethod
    def forward(ctx, x, rows):
        ctx.save_for_backward(rows)
        ctx.n_rows = x.shape[0]
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.n_rows, *grad.shape[1:])
        return out.index_copy_(0, rows, grad), None
