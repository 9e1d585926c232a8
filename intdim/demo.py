"""The core's own demonstration: the same small network tuned in subspaces of several sizes.

Everything is generated in the run (no data, no network): a 4-class problem labelled by a random
"teacher" MLP, and a student MLP (D ~ 21k parameters). The student is first trained in full on a
*related* task (same inputs, teacher with a perturbed output layer), a stand-in for pretraining.
Then it is fine-tuned on the target task in full (the baseline) and through DID and SAID subspaces
of growing d. The printed table shows accuracy against d and the smallest d reaching 90% of the
full fine-tuning accuracy (d90), the quantity the whole project measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from intdim.subspace import SubspaceConfig, wrap


@dataclass
class DemoConfig:
    dims: tuple[int, ...] = (4, 16, 64, 256, 1024, 4096)
    steps: int = 300
    seed: int = 0
    n_train: int = 3000
    n_eval: int = 2000


def _teacher(gen: torch.Generator, perturb: float) -> tuple[torch.Tensor, torch.Tensor]:
    w1 = torch.randn(32, 8, generator=gen)
    w2 = torch.randn(8, 4, generator=gen)
    return w1, w2 + perturb * torch.randn(8, 4, generator=gen)


def _data(gen, teacher, n):
    x = torch.randn(n, 32, generator=gen)
    w1, w2 = teacher
    return x, (torch.tanh(x @ w1 / 4) @ w2).argmax(1)


def _student() -> nn.Module:
    return nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4)
    )


def _train(model: nn.Module, params, x, y, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@torch.no_grad()
def _accuracy(model, x, y) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def run(cfg: DemoConfig | None = None) -> dict[str, dict[int, float]]:
    cfg = cfg or DemoConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    base_teacher = _teacher(gen, 0.0)
    w1, w2 = base_teacher
    related = (w1, w2 + 0.6 * torch.randn(w2.shape, generator=gen))
    target = (w1, w2)
    xp, yp = _data(gen, related, cfg.n_train)
    xt, yt = _data(gen, target, cfg.n_train)
    xe, ye = _data(gen, target, cfg.n_eval)

    torch.manual_seed(cfg.seed)
    pretrained = _student()
    _train(pretrained, pretrained.parameters(), xp, yp, cfg.steps, 3e-3)
    state = {k: v.clone() for k, v in pretrained.state_dict().items()}
    D = sum(p.numel() for p in pretrained.parameters())
    print(f"student MLP with D={D:,} parameters, 'pretrained' on a related task")
    print(f"  zero-shot accuracy on the target task: {_accuracy(pretrained, xe, ye):.3f}")

    full = _student()
    full.load_state_dict(state)
    _train(full, full.parameters(), xt, yt, cfg.steps, 3e-3)
    full_acc = _accuracy(full, xe, ye)
    print(f"  full fine-tuning accuracy:             {full_acc:.3f}", end="")
    print(f"  (90% of it: {0.9 * full_acc:.3f})")

    results: dict[str, dict[int, float]] = {"did": {}, "said": {}}
    runs = [(m, d) for m in ("did", "said") for d in cfg.dims if d <= D]
    for method, d in tqdm(runs, desc="subspace fine-tuning", unit="run"):
        model = _student()
        model.load_state_dict(state)
        sub = wrap(model, SubspaceConfig(d=d, method=method, seed=cfg.seed))
        _train(sub, sub.parameters(), xt, yt, cfg.steps, 0.05)
        results[method][d] = _accuracy(sub, xe, ye)

    print(f"\n{'d':>6} | {'DID acc':>8} | {'SAID acc':>8}")
    print("-" * 30)
    for d in cfg.dims:
        if d in results["did"]:
            print(f"{d:>6} | {results['did'][d]:>8.3f} | {results['said'][d]:>8.3f}")
    for method in ("did", "said"):
        reached = [d for d, acc in sorted(results[method].items()) if acc >= 0.9 * full_acc]
        d90 = f"{reached[0]}" if reached else f"> {max(results[method])}"
        print(f"d90 ({method.upper()}): {d90}   (of D={D:,})")
    return results


def main() -> int:
    run()
    return 0
