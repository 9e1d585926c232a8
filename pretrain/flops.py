"""Model FLOPs of a masked-LM step and the GPU's peak: the trainer logs MFU with these, and
benchmarks/bench_pretrain_mfu.py measures it with the same count.

Model FLOPs are what the model must do, not what the kernels happen to do: 6 per parameter per
token for the layers (forward 2, backward 4), the attention score and value products (12 x layers
x hidden x sequence length per token, forward and backward), and the LM head at the scored
positions only (the trainer computes it nowhere else). Embedding lookups count nothing, padding
and static_shapes' filler rows nothing. MFU = model FLOPs per second / the GPU's dense bf16 peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Dense bf16 tensor-core peaks in TFLOP/s (vendors' datasheets, without sparsity), by a fragment of
# torch.cuda.get_device_name(); the first match wins, so the more specific names come first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
)


@dataclass(frozen=True)
class FlopCount:
    encoder: int  # parameters applied at every token: the layers (not embeddings, not the head)
    head: int  # parameters applied at each scored position: the LM head's dense and decoder
    layers: int
    hidden: int

    @classmethod
    def of(cls, hf_model: nn.Module, vocab: int | None = None) -> FlopCount:
        """For a transformers *ForMaskedLM of the BERT family (RoBERTa's `lm_head` with `dense`
        and a tied `decoder`). `vocab`: the tokenizer's size, when the model's embedding rows are
        padded beyond it (model.pad_vocab_to_multiple_of); the padding rows are not model FLOPs."""
        cfg = hf_model.config
        base = getattr(hf_model, hf_model.base_model_prefix)
        head = hf_model.lm_head
        numel = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        encoder = (
            numel(base)
            - numel(base.embeddings)
            - numel(getattr(base, "pooler", None) or nn.Module())
        )
        return cls(
            encoder=encoder,
            head=head.dense.weight.numel() + (vocab or cfg.vocab_size) * cfg.hidden_size,
            layers=cfg.num_hidden_layers,
            hidden=cfg.hidden_size,
        )

    def per_step(self, tokens: float, scored: float, seq_len: int) -> float:
        """Model FLOPs of a forward and backward over `tokens` tokens in sequences of `seq_len`
        with the LM head at `scored` positions."""
        attention = 12 * self.layers * self.hidden * seq_len
        return (6 * self.encoder + attention) * tokens + 6 * self.head * scored


def peak_tflops(device: torch.device, configured: float = 0.0) -> float | None:
    """The configured peak, else the GPU's from PEAK_TFLOPS; None on a CPU or an unknown GPU."""
    if configured > 0:
        return configured
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in PEAK_TFLOPS if fragment in name), None)
