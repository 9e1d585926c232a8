"""Correctness on a GPU: the CUDA path gives what the CPU path gives (run where CUDA exists).

    python benchmarks/gpu_checks.py

Not a pytest module: CI has no GPU. Prints one PASS/FAIL line per check and exits non-zero on any
failure. The last section checks the fused Triton kernels (intdim/kernels/triton_fastfood.py),
which FastfoodProjection uses for CUDA tensors: against the CPU path, and against the CUDA torch
path (INTDIM_TRITON=0) at the size of one RoBERTa-base chunk, where a missing barrier in the
fused reduction would show.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import env  # noqa: E402
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
    triton_checks(model_cfg=cfg, batch=batch)
    return 1 if failures else 0


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# (LL, index dtype, rows, dot modes) for the kernel checks: int16 is what models of >= 2^24
# parameters get (forced below); the row counts give several rows per program (the scratch row of
# the fused reduction is reused) and a short last program. Dot modes: INTDIM_TRITON_DOT values.
TRITON_CASES = [
    (16, torch.int32, 40_001, ("ieee", "split")),
    (256, torch.int16, 9_001, ("ieee",)),
    (1024, torch.int16, 8_193, ("ieee", "split")),
    (1024, torch.int32, 8_193, ("ieee",)),
    (4096, torch.int16, 2_049, ("ieee",)),
    (8192, torch.int32, 1_025, ("ieee", "split")),
]
CHUNK_FLOATS = 1 << 26  # one RoBERTa-base chunk on CUDA (intdim.hadamard.chunk_elems)
DEV = "cuda"  # a dry run of the script logic on CPU (Triton's interpreter) may change these


def triton_checks(model_cfg, batch) -> None:
    from intdim import projection
    from intdim.kernels import triton_fastfood as tf

    version = getattr(tf.triton, "__version__", "missing")
    check("triton importable, kernels on (not INTDIM_TRITON=0)", tf.available(), version)
    if not tf.available():
        return
    gen = torch.Generator().manual_seed(0)
    small_model = projection.SMALL_MODEL
    min_block = projection.FastfoodProjection.MIN_BLOCK
    for LL, index_dtype, rows, modes in TRITON_CASES:
        projection.SMALL_MODEL = 0 if index_dtype == torch.int16 else 1 << 40
        projection.FastfoodProjection.MIN_BLOCK = 1  # blocks below 1024: what tiny models get
        try:
            D = rows * LL - LL // 3  # a truncated last block
            p_cpu = build_projection("fastfood", D, LL // 2 + 1, seed=LL)
            p_gpu = build_projection("fastfood", D, LL // 2 + 1, seed=LL).to(DEV)
        finally:
            projection.SMALL_MODEL = small_model
            projection.FastfoodProjection.MIN_BLOCK = min_block
        assert p_cpu.block == LL and p_cpu.perm.dtype == index_dtype, (LL, p_cpu.perm.dtype)
        assert p_gpu._use_triton(torch.device(DEV))
        for mode in modes:
            with env(INTDIM_TRITON_DOT=mode):
                name = f"triton LL={LL} {str(index_dtype)[6:]} rows={rows} dot={mode}"
                kernel_checks(p_cpu, p_gpu, name, gen)
    chunk_and_model_checks(model_cfg, batch)
    conditioning_checks()


def singular_range(p) -> tuple[float, float]:
    """Extreme singular values of P from P^T P, one column at a time (P e_j, then autograd)."""
    gram = torch.empty(p.d, p.d, dtype=torch.float64)
    for j in range(p.d):
        x = torch.zeros(p.d, device=p._device())
        x[j] = 1.0
        x.requires_grad_()
        y = p(x)
        (y * y.detach()).sum().backward()
        gram[:, j] = x.grad.double().cpu()
    ev = torch.linalg.eigvalsh((gram + gram.T) / 2).clamp_min(0).sqrt()
    return float(ev.min()), float(ev.max())


def conditioning_checks() -> None:
    """Li et al.'s MNIST shape (D = 199,210, d = 750): the Fastfood P computed by the Triton
    kernels and by the CUDA torch path is as well conditioned as a dense Gaussian P."""
    D, d = 199_210, 750
    dense = singular_range(build_projection("dense", D, d, seed=3).to(DEV))
    for value in ("1", "0"):
        with env(INTDIM_TRITON=value):
            lo, hi = singular_range(build_projection("fastfood", D, d, seed=3).to(DEV))
        path = "triton" if value == "1" else "torch path"
        ok = dense[0] <= lo and hi <= dense[1]
        detail = f"{lo:.4f} .. {hi:.4f} (dense {dense[0]:.4f} .. {dense[1]:.4f})"
        check(f"fastfood singular values within a dense P's, cuda {path}", ok, detail)


def reduced(p, g, weight=None, prep=None):
    """(acc, dots) of p.transpose_reduce over all of g's rows (dots None without prep)."""
    acc = torch.zeros(p.block, device=g.device)
    dots = None if prep is None else torch.empty(g.shape[0], device=g.device)
    p.transpose_reduce(g, 0, g.shape[0], acc, weight, prep, dots)
    return acc, dots


def kernel_checks(p_cpu, p_gpu, name: str, gen: torch.Generator) -> None:
    """p_gpu's block-row methods (kernels) against p_cpu's (torch path), over all rows."""
    n, LL = p_cpu.n_blocks, p_cpu.block
    prep = p_cpu.prepare(torch.randn(p_cpu.d, generator=gen))
    ref = p_cpu.forward_rows(prep, 0, n)
    out = p_gpu.forward_rows(prep.to(DEV), 0, n)
    check(f"{name} forward_rows cuda == cpu", rel(out, ref) < 1e-5, f"{rel(out, ref):.1e}")
    theta0 = torch.randn(n * LL, generator=gen)
    buf = theta0.to(DEV, copy=True)
    p_gpu.forward_rows(prep.to(DEV), 0, n, out=buf, add=buf)  # add aliasing out, as theta
    err = rel(buf.view(n, LL), ref + theta0.view(n, LL))
    check(f"{name} forward_rows + add (aliased) cuda == cpu", err < 1e-5, f"{err:.1e}")
    g = torch.randn(n, LL, generator=gen)
    ref = p_cpu.transpose_rows(g, 0, n)
    out = p_gpu.transpose_rows(g.to(DEV), 0, n)
    check(f"{name} transpose_rows cuda == cpu", rel(out, ref) < 1e-5, f"{rel(out, ref):.1e}")
    w = torch.randn(n, generator=gen)
    for label, weight, pr in (("DID", None, None), ("SAID", w, prep)):
        acc_ref, dots_ref = reduced(p_cpu, g, weight, pr)
        wc = None if weight is None else weight.to(DEV)
        pc = None if pr is None else pr.to(DEV)
        acc, dots = reduced(p_gpu, g.to(DEV), wc, pc)
        err = rel(acc, acc_ref)
        if dots is not None:
            err = max(err, rel(dots, dots_ref))
        check(f"{name} transpose_reduce {label} cuda == cpu", err < 1e-4, f"{err:.1e}")
        again = reduced(p_gpu, g.to(DEV), wc, pc)
        same = torch.equal(again[0], acc) and (dots is None or torch.equal(again[1], dots))
        check(f"{name} transpose_reduce {label} deterministic", same)


def chunk_and_model_checks(model_cfg, batch) -> None:
    from intdim import projection

    small_model = projection.SMALL_MODEL
    gen = torch.Generator().manual_seed(1)
    # One RoBERTa-base chunk on CUDA (2^26 floats, LL = 1024, int16): kernels against the CUDA
    # torch path. 32 rows per program: the fused reduction's scratch row is reused 32 times.
    projection.SMALL_MODEL = 0
    try:
        p = build_projection("fastfood", CHUNK_FLOATS, 1000, seed=1).to(DEV)
    finally:
        projection.SMALL_MODEL = small_model
    n = p.n_blocks
    gc = torch.Generator(device=DEV).manual_seed(0)
    prep = p.prepare(torch.randn(1000, device=DEV, generator=gc))
    g = torch.randn(n, 1024, device=DEV, generator=gc)
    w = torch.randn(n, device=DEV, generator=gc)
    with env(INTDIM_TRITON="0"):
        fwd_ref = p.forward_rows(prep, 0, n).clone()
        acc_ref, dots_ref = reduced(p, g, w, prep)
    for mode in ("ieee", "split"):
        with env(INTDIM_TRITON_DOT=mode):
            fwd = p.forward_rows(prep, 0, n)
            acc, dots = reduced(p, g, w, prep)
        name = f"triton {n} rows of 1024 dot={mode}"
        err = rel(fwd, fwd_ref)
        check(f"{name} forward_rows == torch on cuda", err < 1e-5, f"{err:.1e}")
        err = max(rel(acc, acc_ref), rel(dots, dots_ref))
        check(f"{name} transpose_reduce SAID == torch on cuda", err < 1e-4, f"{err:.1e}")
        del fwd
    del fwd_ref, g

    # Whole projection (autograd through Projection.forward) and a wrapped model, kernels on/off.
    p_cpu = build_projection("fastfood", 1_000_003, 3000, seed=7)
    p_gpu = build_projection("fastfood", 1_000_003, 3000, seed=7).to(DEV)
    v = torch.randn(3000, generator=gen)
    gv = torch.randn(1_000_003, generator=gen)
    xc = v.clone().requires_grad_()
    p_cpu(xc).backward(gv)
    xg = v.to(DEV).requires_grad_()
    p_gpu(xg).backward(gv.to(DEV))
    err = rel(xg.grad, xc.grad)
    check("triton fastfood P^T g (autograd) cuda == cpu", err < 1e-4, f"{err:.1e}")
    from transformers import RobertaForSequenceClassification

    for method in ("said", "did"):
        torch.manual_seed(0)
        sub = wrap(
            RobertaForSequenceClassification(model_cfg).eval(),
            SubspaceConfig(d=1000, method=method, seed=0),
        ).to(DEV)
        with torch.no_grad():
            sub.theta_d.normal_(0, 1)
        res = {}
        for value in ("0", "1"):
            with env(INTDIM_TRITON=value):
                sub.theta_d.grad = None
                theta = {k: t.detach().clone() for k, t in sub.parameters_for_forward().items()}
                sub(**{k: t.to(DEV) for k, t in batch.items()}).loss.backward()
                res[value] = (theta, sub.theta_d.grad.clone())
        err = max(rel(res["1"][0][k], t) for k, t in res["0"][0].items())
        check(f"triton {method} theta: kernels == torch path on cuda", err < 1e-5, f"{err:.1e}")
        gerr = ((res["1"][1] - res["0"][1]).norm() / res["0"][1].norm()).item()
        check(f"triton {method} grad theta_d: kernels == torch path", gerr < 1e-4, f"{gerr:.1e}")


if __name__ == "__main__":
    sys.exit(main())
