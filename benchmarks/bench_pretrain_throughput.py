"""Tokens/s of this trainer against Hugging Face's Trainer + DataCollatorForLanguageModeling.

Same model (RobertaForMaskedLM from one config and seed), same corpus and tokenizer, same optimizer
settings, same dtype (fp32) and threads, dropout 0.1 (hidden and attention) on both sides, on CPU.
Tokens are real (non-pad) input tokens per second over the timed updates.

The two trainers run interleaved in one process, update by update: a callback at the end of each
HF Trainer step runs one intdim update, so both see the same machine load (on a shared machine
load swings several-fold within a minute; runs one after the other compare load, not code). An
HF step is timed from the end of the previous intdim update to its on_step_end (so it includes
HF's data loading, collation and bookkeeping), an intdim update from there to its end. Printed:
tokens/s of each over the timed updates, their ratio, and the spread of the per-pair ratios.

    PYTHONPATH=. python benchmarks/bench_pretrain_throughput.py            # defaults below
    PYTHONPATH=. python benchmarks/bench_pretrain_throughput.py --steps 20 --layers 6
    PYTHONPATH=. python benchmarks/bench_pretrain_throughput.py --modes grouped --threads 1

Compared setups:
- intdim:          packed blocks of 512 (fairseq's complete mode), LM head at masked positions.
- hf_grouped:      HF Trainer on run_mlm.py's group_texts blocks of 512 (packed, no padding),
                   LM head at every position. Same sequences per step: isolates the LM head.
- hf_line_by_line: HF Trainer on one line per example (run_mlm.py --line_by_line), padded per
                   batch, with as many sequences per step as give about the same tokens per step.
The corpus defaults to transformers' own Python sources (a few MB of varied text on any machine).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def parse() -> argparse.Namespace:
    import transformers

    default_corpus = str(Path(transformers.__file__).parent / "models" / "[a-c]*" / "*.py")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=default_corpus)
    p.add_argument("--vocab-size", type=int, default=16000)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--tokens-per-sample", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=12, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--modes", choices=["both", "grouped", "line_by_line"], default="both")
    p.add_argument("--cache-dir", default=".cache/intdim/bench")
    return p.parse_args()


def config_for(args, run_dir: str):
    from intdim.config import load_config
    from pretrain.config import PretrainConfig

    files = sorted(glob.glob(args.corpus))
    return load_config(PretrainConfig, None, [
        f"run_dir={run_dir}", f"data.corpus={','.join(files)}", f"data.cache_dir={args.cache_dir}",
        f"data.tokens_per_sample={args.tokens_per_sample}", "data.valid_fraction=0.0",
        f"tokenizer.vocab_size={args.vocab_size}", "model.preset=roberta_base",
        f"model.num_layers={args.layers}", f"model.hidden_size={args.hidden}",
        f"model.num_heads={args.heads}", f"model.ffn_size={args.ffn}",
        f"optim.batch_size={args.batch_size}", "optim.warmup_updates=10", "max_updates=100000",
        "save_initial_checkpoint=false", "tensorboard=false", "device=cpu",
        f"num_threads={args.threads}",
    ])  # fmt: skip


def bench_pair(args, run, run_dir: str, mode: str) -> dict:
    """HF Trainer in `mode`, one intdim update after each of its steps; per-step times/tokens."""
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from pretrain import train
    from pretrain.data import Corpus, resolve_corpus
    from pretrain.model import build_model
    from pretrain.train import _prepare_data

    cfg = config_for(args, run_dir)
    tokenizer, _ = _prepare_data(cfg)  # the same cached tokenizer as the intdim run
    corpus: Corpus = resolve_corpus(cfg.data)
    block = args.tokens_per_sample
    lines = [ln for ln in corpus.lines()]
    enc = tokenizer(lines, add_special_tokens=True, truncation=True, max_length=block)["input_ids"]
    if mode == "grouped":  # run_mlm.py's group_texts: concatenate, cut into blocks of `block`
        flat = np.concatenate([np.asarray(e) for e in enc])
        n = len(flat) // block
        examples = [{"input_ids": flat[i * block : (i + 1) * block].tolist()} for i in range(n)]
        batch = args.batch_size
    else:  # line by line, padded to the longest line of each batch
        examples = [{"input_ids": e} for e in enc]
        mean_len = float(np.mean([len(e) for e in enc]))
        batch = max(1, round(args.batch_size * block / mean_len))
    rng = np.random.default_rng(0)
    examples = [examples[i] for i in rng.permutation(len(examples))]
    model = build_model(cfg.model, tokenizer, block, cfg.seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    seen: list[int] = []

    def counting_collator(features):
        out = collator(features)
        seen.append(int((out["input_ids"] != tokenizer.pad_token_id).sum()))
        return out

    hf_s: list[float] = []
    ours_s: list[float] = []
    ours_tokens: list[int] = []
    last = [time.perf_counter()]

    class Interleave(TrainerCallback):
        def on_step_end(self, *a, **k):
            t0 = time.perf_counter()
            hf_s.append(t0 - last[0])
            ours_tokens.append(train.train_update(run)[1])
            last[0] = time.perf_counter()
            ours_s.append(last[0] - t0)

    targs = TrainingArguments(
        output_dir=run_dir, per_device_train_batch_size=batch, max_steps=args.warmup + args.steps,
        learning_rate=5e-4, adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, weight_decay=0.01,
        warmup_steps=10, lr_scheduler_type="linear", max_grad_norm=0.0, logging_steps=10**6,
        save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=1,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=targs, train_dataset=examples, data_collator=counting_collator,
        callbacks=[Interleave()],
    )  # fmt: skip
    last[0] = time.perf_counter()
    trainer.train()
    w = slice(args.warmup, args.warmup + args.steps)
    assert len(hf_s) == args.warmup + args.steps, len(hf_s)
    return {
        "hf": (sum(seen[w]) / sum(hf_s[w]), sum(seen[w]) / args.steps),
        "intdim": (sum(ours_tokens[w]) / sum(ours_s[w]), sum(ours_tokens[w]) / args.steps),
        # per pair: intdim tokens/s over HF tokens/s in adjacent steps
        "pairs": [
            (o_tok / o_s) / (h_tok / h_s)
            for o_tok, o_s, h_tok, h_s in zip(
                ours_tokens[w], ours_s[w], seen[w], hf_s[w], strict=True
            )  # fmt: skip
        ],
    }


def main() -> None:
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"model: {args.layers} layers x {args.hidden} hidden, {args.heads} heads, "
          f"FFN {args.ffn}, vocab {args.vocab_size}; {args.tokens_per_sample} tokens/sample, "
          f"batch {args.batch_size}; {args.steps} timed steps after {args.warmup}")  # fmt: skip
    from pretrain import train

    modes = ["grouped", "line_by_line"] if args.modes == "both" else [args.modes]
    with tempfile.TemporaryDirectory() as tmp:
        run = train.setup(config_for(args, f"{tmp}/intdim"))
        try:
            for _ in range(args.warmup):
                train.train_update(run)
            for mode in modes:
                r = bench_pair(args, run, f"{tmp}/hf_{mode}", mode)
                pairs = sorted(r["pairs"])
                print(f"{'setup':<18}{'tokens/s':>12}{'tokens/step':>14}")
                for name, (tok_s, per_step) in (("intdim", r["intdim"]), (f"hf_{mode}", r["hf"])):
                    print(f"{name:<18}{tok_s:>12,.0f}{per_step:>14,.0f}")
                ratio = r["intdim"][0] / r["hf"][0]
                med = pairs[len(pairs) // 2]
                print(
                    f"intdim / hf_{mode}: {ratio:.2f}x over the timed steps; per adjacent pair "
                    f"min {pairs[0]:.2f}x, median {med:.2f}x, max {pairs[-1]:.2f}x",
                    flush=True,
                )
        finally:
            train.cleanup(run)


if __name__ == "__main__":
    main()
