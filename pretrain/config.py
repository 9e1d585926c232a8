"""The pretrain stage's config schema: typed dataclasses, filled from YAML by `load_config`.

    cfg = load_config(PretrainConfig, "configs/pretrain/tiny.yaml", ["max_updates=30"])

Names follow fairseq where fairseq has one (max_updates, save_interval_updates, update_freq,
tokens_per_sample, warmup_updates, clip_norm) so a reader of the RoBERTa recipe finds them.
Validation that needs no files happens here, in `__post_init__`, so a bad value fails at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from intdim.errors import UserError

TOKENIZER_KINDS = ("bpe", "sentencepiece", "pretrained")
MODEL_PRESETS = ("roberta_base", "roberta_tiny")
PRECISIONS = ("bf16", "bf16-master", "fp32")
SUBSPACE_METHODS = ("did", "said")
# How a padded batch's attention runs: SDPA with the padding mask, or, on a GPU, the padding as
# FlashAttention-2 varlen segments (pretrain/attention.py, segment_attention).
PADDED_ATTENTION = ("mask", "segments")
# torch.compile's modes; "max-autotune-no-cudagraphs" autotunes the GEMMs (minutes of compile).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# What a resumed run may change without being refused (pretrain.train): bookkeeping, logging,
# validation, and speed options whose maths is the same (at most another float summation order).
# max_updates extends or shortens a run (the LR decay is then aimed at the new end). Any other
# change (seed, optim.*, model.*, objective.*, data.*, tokenizer.*, precision, ...) would go on as
# another run than the checkpoints before it; it is refused unless named in allow_changed_settings.
RESUME_MAY_CHANGE = (
    "run_dir", "max_updates", "save_interval_updates", "keep_last_optimizer_states",
    "save_initial_checkpoint", "validate_interval_updates", "log_interval", "device", "compile",
    "compile_mode", "compile_fullgraph", "compile_loss", "compile_tune_kernels", "static_shapes",
    "padded_attention", "tensorboard", "peak_tflops", "num_threads", "allow_changed_settings",
    "data.cache_dir", "data.max_valid_blocks", "data.workers",
)  # fmt: skip


@dataclass
class DataConfig:
    # A file, a directory, a glob, several of these separated by commas, "demo" (a synthetic
    # corpus generated on the spot) or "hf:<dataset>[:<subset>]" (read through `datasets`).
    corpus: str = ""
    hf_split: str = "train"
    text_field: str = "text"
    # Binarised shards and trained tokenizers land here, keyed by a hash of corpus + tokenizer.
    cache_dir: str = ".cache/intdim/pretrain"
    tokens_per_sample: int = 512
    valid_fraction: float = 0.01  # of documents, chosen by a seeded hash of the document index
    max_valid_blocks: int = 256  # validation loss is computed over at most this many blocks
    shard_tokens: int = 100_000_000  # tokens per memory-mapped shard file
    demo_documents: int = 400  # size of the "demo" corpus
    # Processes that binarise the corpus; null: every core this process may use. The shards are
    # the same whatever the number (pretrain/shards.py).
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_sample < 8:
            raise UserError(f"data.tokens_per_sample must be >= 8, got {self.tokens_per_sample}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(f"data.valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.shard_tokens < 1024:
            raise UserError(f"data.shard_tokens must be >= 1024, got {self.shard_tokens}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"data.workers must be >= 1 (or null: every core), got {self.workers}")


@dataclass
class TokenizerConfig:
    kind: str = "bpe"  # bpe (byte-level, as RoBERTa) | sentencepiece (unigram) | pretrained
    vocab_size: int = 50265
    min_frequency: int = 2
    name_or_path: str = ""  # kind=pretrained: a local directory or an already-cached hub id

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise UserError(
                f"unknown tokenizer.kind {self.kind!r}; choose one of: {', '.join(TOKENIZER_KINDS)}"
            )
        if self.kind == "pretrained" and not self.name_or_path:
            raise UserError("tokenizer.kind=pretrained needs tokenizer.name_or_path")


@dataclass
class ModelConfig:
    preset: str = "roberta_base"  # roberta_base (12x768, 12 heads, 3072 FFN) | roberta_tiny
    # 0 (or -1 for dropouts) keeps the preset's value.
    num_layers: int = 0
    hidden_size: int = 0
    num_heads: int = 0
    ffn_size: int = 0
    dropout: float = -1.0
    attention_dropout: float = -1.0
    max_positions: int = 0  # RoBERTa: 514 = 512 tokens + padding_idx offset of 2
    # The embedding and LM-head rows are rounded up to a multiple of this (Megatron-LM's
    # --make-vocab-size-divisible-by). The extra rows are never an input or a target. On a GPU a
    # row length that is no multiple of 8 (RoBERTa's 50,265) misaligns the LM head's matmuls and
    # softmax for the tensor cores; 1 keeps the tokenizer's size.
    pad_vocab_to_multiple_of: int = 1

    def __post_init__(self) -> None:
        if self.preset not in MODEL_PRESETS:
            raise UserError(
                f"unknown model.preset {self.preset!r}; choose one of: {', '.join(MODEL_PRESETS)}"
            )
        if self.pad_vocab_to_multiple_of < 1:
            raise UserError(
                f"model.pad_vocab_to_multiple_of must be >= 1 (1: no padding), got "
                f"{self.pad_vocab_to_multiple_of}"
            )


@dataclass
class ObjectiveConfig:
    name: str = "mlm"  # see pretrain/objectives/ for the registry
    mask_prob: float = 0.15
    leave_unmasked_prob: float = 0.1
    random_token_prob: float = 0.1
    span_geometric_p: float = 0.2  # span: span lengths ~ Geometric(p), clipped to max_span
    max_span: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise UserError(f"objective.mask_prob must be in (0, 1), got {self.mask_prob}")
        if (
            self.leave_unmasked_prob + self.random_token_prob > 1.0
            or min(self.leave_unmasked_prob, self.random_token_prob) < 0
        ):
            raise UserError(
                "objective.leave_unmasked_prob and random_token_prob must be >= 0 and sum to <= 1"
            )


@dataclass
class OptimConfig:
    lr: float = 6e-4  # peak learning rate, reached after warmup_updates
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.01
    warmup_updates: int = 10000
    clip_norm: float = 0.0  # 0: no clipping
    batch_size: int = 16  # sequences per device per forward (fairseq --max-sentences)
    update_freq: int = 1  # gradient accumulation
    # When > 0, update_freq is derived: global_batch_size = batch_size x world x update_freq.
    global_batch_size: int = 0

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise UserError(f"optim.betas must have two values, got {list(self.betas)}")
        if self.batch_size < 1 or self.update_freq < 1:
            raise UserError("optim.batch_size and optim.update_freq must be >= 1")
        if self.warmup_updates < 0 or self.lr <= 0:
            raise UserError("optim.lr must be > 0 and optim.warmup_updates >= 0")


@dataclass
class SubspacePretrainConfig:
    d: int = 0  # 0: ordinary pretraining; > 0: train only theta_d (intdim.subspace.wrap)
    method: str = "said"
    projection: str = "fastfood"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d < 0:
            raise UserError(f"subspace.d must be >= 0 (0 turns it off), got {self.d}")
        if self.method not in SUBSPACE_METHODS:
            raise UserError(f"unknown subspace.method {self.method!r}; choose did or said")


@dataclass
class PretrainConfig:
    run_dir: str = "runs/pretrain"
    seed: int = 1
    max_updates: int = 125000
    save_interval_updates: int = 10000
    keep_last_optimizer_states: int = 2  # weights are kept for every checkpoint
    save_initial_checkpoint: bool = True  # checkpoint_0: the random initialisation
    validate_interval_updates: int = 0  # 0: at every save
    log_interval: int = 10
    device: str = "auto"  # auto | cpu | cuda
    # bf16: autocast (fp32 weights; GPU only, CPU runs fp32) | bf16-master: a bf16 model, fp32
    # master weights, optimizer state and gradient accumulation (fairseq's --fp16, in bf16; on
    # every device; pretrain/precision.py) | fp32
    precision: str = "bf16"
    compile: bool = False
    # GPU throughput options (benchmarks/bench_pretrain_mfu.py measures each); the next three
    # need compile=true.
    compile_mode: str = "default"  # one of COMPILE_MODES
    compile_fullgraph: bool = False  # fail at compile time on a graph break instead of splitting
    # The cross-entropy inside the compiled module (fused with the LM head), not after it.
    compile_loss: bool = False
    # Inductor's coordinate-descent tuning of the launch settings of the kernels it generates
    # (LayerNorm, dropout, GELU...; not the matmuls) while compiling: a slower compile, maybe a
    # faster step (bench_pretrain_mfu.py's `cdt`).
    compile_tune_kernels: bool = False
    # Pad every training batch to data.tokens_per_sample tokens and its scored positions to the
    # most a batch can have (unscored filler rows): one shape, so torch.compile compiles once
    # (dynamic=False) instead of recompiling or going dynamic as the count of scored positions
    # changes from batch to batch. Same loss up to float summation order; see make_batch.
    static_shapes: bool = False
    # Hidden dropout's keep-masks drawn as bits, eight per random number (pretrain/dropout.py; on
    # CUDA a Triton kernel): the same dropout with cheaper random numbers than the ones inductor
    # draws per element inside its fused kernels. Another draw than torch's dropout, not the same.
    dropout_bitmask: bool = False
    # mask | segments: a padded batch's attention (most batches: packed blocks are rarely all
    # full) with SDPA and the padding mask, which rules out SDPA's fastest GPU kernels, or as
    # FlashAttention-2 variable-length segments over the same buffers, no mask and no copy
    # (bf16 on a GPU; elsewhere the mask). Unpadded batches have no mask either way.
    padded_attention: str = "mask"
    tensorboard: bool = True
    # The GPU's dense bf16 peak in TFLOP/s, for the MFU in the logs; 0 takes it from the GPU's
    # name (pretrain/flops.py: H100, H200, A100, ...), and no MFU is shown on a CPU or unknown GPU.
    peak_tflops: float = 0.0
    num_threads: int = 0  # CPU threads per process for torch; 0 keeps torch's default
    # Keys (or sections, e.g. "optim") a resume may change although they change the training
    # trajectory (a lower optim.lr after a loss spike): allow_changed_settings=[optim.lr]. Without
    # it, resuming a run_dir with other values of such keys is refused (RESUME_MAY_CHANGE).
    allow_changed_settings: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    subspace: SubspacePretrainConfig = field(default_factory=SubspacePretrainConfig)

    def __post_init__(self) -> None:
        if self.max_updates < 1:
            raise UserError(f"max_updates must be >= 1, got {self.max_updates}")
        if self.save_interval_updates < 1:
            raise UserError(f"save_interval_updates must be >= 1, got {self.save_interval_updates}")
        if self.keep_last_optimizer_states < 1:
            raise UserError("keep_last_optimizer_states must be >= 1 (resume needs the last one)")
        if self.precision not in PRECISIONS:
            raise UserError(
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"
            )
        if self.padded_attention not in PADDED_ATTENTION:
            raise UserError(
                f"unknown padded_attention {self.padded_attention!r}; choose one of: "
                f"{', '.join(PADDED_ATTENTION)}"
            )
        if self.precision == "bf16-master" and self.subspace.d > 0:
            raise UserError(
                "precision=bf16-master trains the full model; with subspace.d > 0 use "
                "precision=bf16 (only theta_d is trained)"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if self.peak_tflops < 0:
            raise UserError(
                f"peak_tflops must be >= 0 (0: from the GPU's name), got {self.peak_tflops}"
            )
        if self.num_threads < 0:
            raise UserError(f"num_threads must be >= 0, got {self.num_threads}")
        if self.log_interval < 1:
            raise UserError(f"log_interval must be >= 1, got {self.log_interval}")
        if self.compile_mode not in COMPILE_MODES:
            raise UserError(
                f"unknown compile_mode {self.compile_mode!r}; choose one of: "
                f"{', '.join(COMPILE_MODES)}"
            )
        needs_compile = [
            name
            for name, on in (
                ("compile_mode", self.compile_mode != "default"),
                ("compile_fullgraph", self.compile_fullgraph),
                ("compile_loss", self.compile_loss),
                ("compile_tune_kernels", self.compile_tune_kernels),
            )
            if on
        ]
        if needs_compile and not self.compile:
            raise UserError(f"{', '.join(needs_compile)} only act with compile=true; set it")
