"""The objective interface, shared batch assembly and the loss computed only where it counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from intdim.registry import Registry
from pretrain.config import ObjectiveConfig
from pretrain.model import IGNORE_INDEX, summed_cross_entropy

OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) corrupted tokens, padded with <pad> to the longest block
    attention_mask: torch.Tensor | None  # None when every block in the batch is full length
    positions: torch.Tensor  # flat indices into B*L where the loss is taken (distinct)
    targets: torch.Tensor  # the original token at each of those positions, or IGNORE_INDEX
    n_tokens: int  # real (non-pad) input tokens, for tokens/s
    n_scored: int  # positions that count (targets != IGNORE_INDEX): the loss's normaliser

    def to(self, device: torch.device) -> Batch:
        # A copy from pageable memory makes the host wait for the GPU; from pinned memory it is
        # queued behind the running kernels and the host goes on to build the next batch.
        pin = device.type == "cuda"

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return (t.pin_memory() if pin else t).to(device, non_blocking=True)

        return Batch(
            move(self.input_ids),
            move(self.attention_mask),
            move(self.positions),
            move(self.targets),
            self.n_tokens,
            self.n_scored,
        )


@dataclass
class Vocab:
    size: int
    pad: int
    mask: int
    special_ids: list[int]


class Objective:
    """Subclasses implement `corrupt`; the batch layout and the loss are shared."""

    def __init__(self, cfg: ObjectiveConfig, vocab: Vocab, seed: int) -> None:
        self.cfg, self.vocab, self.seed = cfg, vocab, seed
        # Random replacements are drawn uniformly from the non-special tokens (fairseq's weights).
        ordinary = np.ones(vocab.size, dtype=bool)
        ordinary[[i for i in vocab.special_ids if i < vocab.size]] = False
        self._ordinary_ids = np.flatnonzero(ordinary)

    def corrupt(
        self, tokens: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(model input, boolean mask of the positions the loss is taken at)."""
        raise NotImplementedError

    def replace(self, tokens: np.ndarray, chosen: np.ndarray, rng: np.random.Generator):
        """BERT's 80/10/10: of the chosen positions, leave_unmasked_prob stay, random_token_prob
        get a random token, the rest become <mask>. Draws follow fairseq's MaskTokensDataset."""
        sz = len(tokens)
        out = tokens.copy()
        p_rand, p_keep = self.cfg.random_token_prob, self.cfg.leave_unmasked_prob
        masked = chosen.copy()
        rand_mask = None
        if p_rand + p_keep > 0:
            rand_or_keep = chosen & (rng.random(sz) < p_rand + p_keep)
            keep_share = p_keep / (p_rand + p_keep)
            decision = rng.random(sz) < keep_share
            keep = rand_or_keep & decision
            rand_mask = rand_or_keep & ~decision
            masked = chosen & ~keep & ~rand_mask
        out[masked] = self.vocab.mask
        if rand_mask is not None and rand_mask.any():
            out[rand_mask] = rng.choice(self._ordinary_ids, int(rand_mask.sum()))
        return out

    def max_scored(self, length: int) -> int:
        """The most positions `corrupt` can score in one block of at most `length` tokens.
        MLM draws int(mask_prob * len + U[0, 1)) and span masking max(1, that) (never more), both
        < mask_prob * length + 1. An objective with another budget overrides this; make_batch
        fails loudly if a block exceeds it."""
        return max(1, int(self.cfg.mask_prob * length + 1.0))

    def make_batch(
        self,
        blocks: list[np.ndarray],
        keys: list[tuple[int, int]],
        length: int | None = None,
        n_scored: int | None = None,
    ) -> Batch:
        """Corrupt each block with its own seeded generator and lay the batch out.

        By default the batch is as long as its longest block and holds exactly the scored
        positions. For static shapes (torch.compile then compiles one graph, not one per batch
        shape or a slower dynamic one) `length` pads every row to that many tokens and
        `n_scored` pads the positions to that count with distinct unscored positions whose target
        is IGNORE_INDEX: they add 0 to the summed loss and get no gradient, so the loss is the same
        up to float summation order. Padding the length changes the shape of the dropout draws, so
        a run's exact numbers differ from the unpadded run's (each is exact on resume)."""
        length = max([len(b) for b in blocks] + ([length] if length else []))
        ids = np.full((len(blocks), length), self.vocab.pad, dtype=np.int64)
        chosen = np.zeros((len(blocks), length), dtype=bool)
        for r, (block, (epoch, index)) in enumerate(zip(blocks, keys, strict=True)):
            rng = np.random.default_rng([self.seed, epoch, index])
            x, c = self.corrupt(block, rng)
            ids[r, : len(block)] = x
            chosen[r, : len(block)] = c
        flat = np.flatnonzero(chosen)
        originals = np.full((len(blocks), length), self.vocab.pad, dtype=np.int64)
        for r, block in enumerate(blocks):
            originals[r, : len(block)] = block
        targets = originals.reshape(-1)[flat]
        scored = len(flat)
        if n_scored is not None:
            if scored > n_scored:
                raise ValueError(
                    f"{type(self).__name__} scored {scored} positions, more than the {n_scored} "
                    "static_shapes allows; its max_scored() is wrong"
                )
            # Distinct filler rows: MaskedLM's row gather needs distinct positions (its backward
            # copies rather than adds), and there are always enough since n_scored <= B * L.
            filler = np.flatnonzero(~chosen.reshape(-1))[: n_scored - scored]
            flat = np.concatenate([flat, filler])
            targets = np.concatenate([targets, np.full(len(filler), IGNORE_INDEX)])
        full = all(len(b) == length for b in blocks)
        attn = None
        if not full:
            attn = torch.zeros(len(blocks), length, dtype=torch.long)
            for r, block in enumerate(blocks):
                attn[r, : len(block)] = 1
        return Batch(
            input_ids=torch.from_numpy(ids),
            attention_mask=attn,
            positions=torch.from_numpy(flat),
            targets=torch.from_numpy(targets),
            n_tokens=int(sum(len(b) for b in blocks)),
            n_scored=scored,
        )

    def loss(self, model, batch: Batch, in_model: bool = False) -> torch.Tensor:
        """The summed cross-entropy at the batch's target positions. `model` is a
        `pretrain.model.MaskedLM` (or the subspace wrapper around one, called the same way):
        it runs the LM head only at those positions, which is where most of the saving is.
        `in_model`: the model computes the loss itself (same function), so that torch.compile
        fuses it into the compiled graph (`compile_loss=true`)."""
        args = (batch.input_ids, batch.attention_mask, batch.positions)
        if in_model:
            return model(*args, batch.targets)
        return summed_cross_entropy(model(*args), batch.targets)


def build_objective(cfg: ObjectiveConfig, vocab: Vocab, seed: int) -> Objective:
    return OBJECTIVES.get(cfg.name)(cfg, vocab, seed)
