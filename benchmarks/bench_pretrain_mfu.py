"""Model FLOPs utilisation of the pretraining step for RoBERTa-base, bf16, on a GPU.

    python benchmarks/bench_pretrain_mfu.py [--batch 32] [--compile] [--peak-tflops 989]

The step is the trainer's: `pretrain.model.MaskedLM` (LM head only at the scored positions) under
bf16 autocast, cross-entropy on 15% of 512-token blocks, fused AdamW. Random tokens (throughput
does not depend on the text). MFU counts the model FLOPs a step must do, 6 per parameter per token
for the encoder, the attention score/value products (12 * layers * hidden * seq per token), and the
LM head at the scored positions only, divided by the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s).
Goal (pretrain issue): >= 40%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from pretrain.config import ModelConfig  # noqa: E402
from pretrain.model import MaskedLM, build_config  # noqa: E402


class _Tok(SimpleNamespace):
    def __len__(self) -> int:
        return self.vocab


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    from transformers import RobertaForMaskedLM

    tok = _Tok(vocab=50265, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    cfg = build_config(ModelConfig(preset="roberta_base"), tok, a.seq)
    torch.manual_seed(0)
    model = MaskedLM(RobertaForMaskedLM(cfg)).cuda().train()
    step_model = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, fused=True
    )
    n_total = sum(p.numel() for p in model.parameters())
    emb = model.hf.roberta.embeddings
    n_emb = sum(p.numel() for p in emb.parameters())
    head = model.hf.lm_head
    n_head_dense = head.dense.weight.numel() + head.decoder.weight.numel()  # decoder tied
    n_encoder = n_total - n_emb - head.dense.weight.numel() - head.dense.bias.numel()
    n_encoder -= sum(p.numel() for p in head.layer_norm.parameters()) + head.bias.numel()
    ids = torch.randint(3, 50265, (a.batch, a.seq), device="cuda")
    mask = torch.ones_like(ids)
    n_scored = int(0.15 * a.batch * a.seq)
    positions = torch.randperm(a.batch * a.seq, device="cuda")[:n_scored]
    targets = torch.randint(3, 50265, (n_scored,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = step_model(ids, mask, positions)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / a.steps
    tokens = a.batch * a.seq
    L, h = cfg.num_hidden_layers, cfg.hidden_size
    flops = 6 * n_encoder * tokens + 12 * L * h * a.seq * tokens + 6 * n_head_dense * n_scored
    mfu = flops / dt / (a.peak_tflops * 1e12)
    print(f"machine: {machine()}")
    print(
        f"RoBERTa-base MLM (D={n_total:,}), batch {a.batch} x {a.seq}, bf16 autocast, "
        f"compile={a.compile}"
    )
    print(
        f"  step {dt * 1e3:.1f} ms, {tokens / dt:,.0f} tokens/s, "
        f"{flops / dt / 1e12:.0f} TFLOP/s, MFU {mfu:.1%} of {a.peak_tflops:.0f} TFLOP/s"
    )


if __name__ == "__main__":
    main()
