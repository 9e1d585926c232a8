"""Correctness on a GPU: the CUDA path gives what the CPU path gives (run where CUDA exists).

    python benchmarks/gpu_checks.py

Not a pytest module: CI has no GPU. Prints one PASS/FAIL line per check and exits non-zero on any
failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from intdim import SubspaceConfig, build_projection, fwht, wrap  # noqa: E402

failures = 0


def check(name: str, ok: bool, detail: str = "") -> None:
    global failures
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}")


def main() -> int:
    assert torch.cuda.is_available(), "needs CUDA"
    torch.backends.cuda.matmul.allow_tf32 = True  # as many training scripts set it: must not leak
    x = torch.randn(64, 4096, dtype=torch.float64)
    for dt in (torch.float32, torch.bfloat16):
        cpu = fwht(x.to(dt)).double()
        gpu = fwht(x.to(dt).cuda()).double().cpu()
        err = ((cpu - gpu).abs().max() / cpu.abs().max()).item()
        check(f"fwht {dt} cuda == cpu", err < (1e-6 if dt == torch.float32 else 1e-2), f"{err:.1e}")
    p_cpu = build_projection("fastfood", 1_000_003, 3000, seed=7)
    p_gpu = build_projection("fastfood", 1_000_003, 3000, seed=7).cuda()
    v = torch.randn(3000)
    a, b = p_cpu(v), p_gpu(v.cuda()).cpu()
    err = ((a - b).abs().max() / a.abs().max()).item()
    check("fastfood P x: same seed, same P on cuda", err < 1e-5, f"{err:.1e}")
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = RobertaForSequenceClassification(cfg).eval()
    ids = torch.randint(3, 1000, (4, 16))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([0, 1, 1, 0]),
    }
    sub = wrap(model, SubspaceConfig(d=500, method="said", seed=0))
    with torch.no_grad():
        sub.theta_d.normal_(0, 1)
    theta_cpu = {k: v.clone() for k, v in sub.parameters_for_forward().items()}
    out = sub(**batch)
    out.loss.backward()
    g_cpu, logits_cpu = sub.theta_d.grad.clone(), out.logits.detach().clone()
    sub.theta_d.grad = None
    sub.cuda()
    theta_gpu = sub.parameters_for_forward()  # built with TF32 allowed globally: must not use it
    err = max(
        ((theta_gpu[k].cpu() - v).abs().max() / v.abs().max()).item() for k, v in theta_cpu.items()
    )
    check(
        "theta = theta0 + P(theta_d): cuda == cpu (TF32 allowed globally)", err < 1e-6, f"{err:.1e}"
    )
    torch.backends.cuda.matmul.allow_tf32 = False  # the model's own matmuls, for the comparison
    out = sub(**{k: t.cuda() for k, t in batch.items()})
    out.loss.backward()
    err = (out.logits.detach().cpu() - logits_cpu).abs().max().item()
    check("wrapped RoBERTa logits cuda == cpu", err < 1e-4, f"{err:.1e}")
    gerr = ((sub.theta_d.grad.cpu() - g_cpu).norm() / g_cpu.norm()).item()
    check("wrapped RoBERTa grad theta_d cuda == cpu", gerr < 1e-3, f"{gerr:.1e}")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        inside = sub.parameters_for_forward()
    plain = sub.parameters_for_forward()
    same = all(torch.equal(inside[k], plain[k]) for k in plain)
    check("theta under bf16 autocast == float32 theta", same)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
