"""The LR schedule: fairseq's linear warmup and linear decay to 0 at max_updates."""

from __future__ import annotations

import pytest
import torch

from pretrain.train import lr_factor


@pytest.mark.parametrize(
    "done, want",
    [(0, 1 / 100), (1, 1 / 100), (50, 0.5), (100, 1.0), (101, 899 / 900), (550, 0.5),
     (999, 1 / 900), (1000, 0.0), (1200, 0.0)],
)  # fmt: skip
def test_lr_factor_at_chosen_updates(done, want):
    assert lr_factor(done, warmup=100, total=1000) == pytest.approx(want)


def test_scheduler_drives_adamw_with_fairseq_values():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: lr_factor(n, 10, 30))
    used = []
    for _ in range(30):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used[0] == pytest.approx(5e-5) and used[9] == pytest.approx(4.5e-4)
    assert used[10] == pytest.approx(5e-4) and used[20] == pytest.approx(2.5e-4)
    assert opt.param_groups[0]["lr"] == 0.0
