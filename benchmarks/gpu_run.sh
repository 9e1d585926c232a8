#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (device time is scarce):
#   bash benchmarks/gpu_run.sh                    # all sections, in this order:
#   bash benchmarks/gpu_run.sh checks said mfu mfuprof said512 fastfood mnist trainer   # any, in order
# The fused Triton kernels for the Fastfood projection (intdim/kernels/triton_fastfood.py) are on
# by default for CUDA tensors; the benches time them against the torch path (INTDIM_TRITON=0) in
# the same runs, so no second session is needed for the baseline.
# Each step's output also goes to $OUT/gpu_<step>.txt (the device tool brings $OUT back even when
# the whole command is cut off at its time limit), or to /tmp without $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. INTDIM_TRITON=1
SECTIONS=${*:-checks said mfu said512 fastfood mnist}
LOGS=${OUT:-/tmp}
step() {  # step NAME SECONDS COMMAND...: run with a hang guard, print and keep its output
    local name=$1 limit=$2
    shift 2
    echo "==== $name (at most ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$LOGS/gpu_$name.txt"
}
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton: NOT importable (torch path only)"

# The limits only guard against a hang (e.g. a kernel that never finishes compiling); most
# important first. mfu takes ~7 minutes, trainer ~3, the others 1-2 each. Next for the pretrain
# MFU goal, one call of ~9.5 minutes: `bash benchmarks/gpu_run.sh trainer mfu` (carry .whl: see
# the trainer section).
for section in $SECTIONS; do
    case $section in
    checks) step checks 120 python3 benchmarks/gpu_checks.py ;;
    # The SAID step against full fine-tuning (the goal), kernels on and off, and profiles
    # (by GPU time and by CPU time: the step is partly launch-bound at 32 x 128).
    said) step said_step 150 python3 benchmarks/bench_subspace_step.py --preset base --device cuda \
        --repeat 10 --batch 32 --compare-triton --profile --no-memory ;;
    said512) step said_step_512 100 python3 benchmarks/bench_subspace_step.py --preset base \
        --device cuda --repeat 5 --batch 32 --seq 512 --compare-triton --no-memory --profile ;;
    # RoBERTa-base's D and block length (d = 1000 -> LL = 1024), with a launch-settings sweep.
    fastfood) step fastfood 150 python3 benchmarks/bench_fastfood.py --device cuda --repeat 5 \
        --D 124647938 --d 1000 --compare-triton --sweep ;;
    mnist)
        step mnist 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
        INTDIM_TRITON=0 step mnist_torch 45 python3 benchmarks/bench_li_mnist.py --device cuda --repeat 200
        ;;
    # MFU variants (bench_pretrain_mfu.py; BENCHMARKS.md "Model FLOPs utilisation"): one process
    # measures them in this order, skips any that would end past --budget-s (compile time counts;
    # each prints its own line as it finishes). No omegaconf needed. --profile: each variant's
    # kernels by kind after its timed steps (a few seconds each).
    # Session 6 (H200): 37.4% at best (b128, bf16-master, no mask). Session 7 (no GPU) added the
    # padded vocabulary (vpad: the LM head's rows aligned for the tensor cores) and hidden dropout
    # with bit masks drawn outside inductor's kernels (bits: those kernels were bound by their
    # per-element Philox, not by memory); the reference comes first, on the same card. Then
    # inductor's tuning of its own kernels (cdt), the paper config's shape per GPU on 8 GPUs (b64,
    # 2 micro-batches, padding mask kept), b256, the padding mask with cuDNN's attention tried
    # first, the mask's batches as varlen segments (segments), and what dropout costs at all
    # (nodrop). --probe first: each SDPA backend alone on the model's attention with and without
    # the mask, and a padded batch as FlashAttention-2 varlen segments (no mask, no copy), checked
    # against the mask: what the trainer's padded batches (5% of the step at b64 in session 6)
    # could use. With `trainer` first the whole call is ~9.5 minutes: keep it under the device
    # tool's 10-minute limit for one command.
    mfu) step mfu 400 python3 benchmarks/bench_pretrain_mfu.py --budget-s 370 --profile --probe --variants \
        compile+nomask+lossc+b128+master,compile+nomask+lossc+b128+master+vpad,compile+nomask+lossc+b128+master+bits,compile+nomask+lossc+b128+master+vpad+bits,compile+nomask+lossc+b128+master+vpad+bits+cdt,compile+lossc+b64+master+vpad+bits+acc2,compile+nomask+lossc+b256+master+vpad+bits+acc2,compile+lossc+b128+master+vpad+bits+cudnn,compile+lossc+b128+master+vpad+bits+segments,compile+nomask+lossc+b128+master+nodrop ;;
    # Where the best variant's GPU time goes (kernels by kind, then the top 25).
    mfuprof) step mfu_profile 150 python3 benchmarks/bench_pretrain_mfu.py --profile --variants \
        compile+nomask+lossc+b128+master ;;
    # The trainer itself (intdim pretrain, the paper config: bf16-master, vocabulary padded to a
    # multiple of 128) on a generated corpus: RoBERTa-base at micro-batch 128, compiled with the
    # loss and static shapes, as the paper config is, then with session 7's two options
    # (dropout_bitmask=true padded_attention=segments: most of these batches are padded); tokens/s
    # and MFU per 10 updates, then the saved weights' dtype. Session 6 (H200, before the update
    # loop stopped waiting for the GPU): 526,600 tokens/s, 0.81x the bench's model TFLOP/s. The
    # bench's step with the padding mask kept (as the generated corpus's batches) and the
    # trainer's vocabulary here (397) is the side-by-side reference. Needs omegaconf, which the
    # GPU image lacks: carry .whl, made here with
    # `pip download --no-deps -d .whl omegaconf==2.4.0` (it needs only PyYAML, there).
    trainer)
        step trainer_bench 130 python3 benchmarks/bench_pretrain_mfu.py --vocab 397 --variants \
            compile+lossc+b128+master+vpad,compile+lossc+b128+master+vpad+bits+segments
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
        for options in paper session7; do
            extra=()
            [ "$options" = session7 ] && extra=(dropout_bitmask=true padded_attention=segments)
            PYTHONPATH=/tmp/site:. step "trainer_$options" 100 python3 -m intdim.cli pretrain \
                configs/pretrain/roberta_base_paper.yaml data.corpus=demo data.demo_documents=16000 \
                data.cache_dir=/tmp/cache run_dir=/tmp/run_$options max_updates=50 \
                save_interval_updates=50 save_initial_checkpoint=false log_interval=10 \
                optim.batch_size=128 optim.global_batch_size=128 optim.warmup_updates=10 \
                "${extra[@]}"
            python3 -c "import json,struct,sys,glob; f=open(glob.glob(sys.argv[1])[0],'rb'); \
n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); h.pop('__metadata__',None); \
print('saved weights:', sorted({v['dtype'] for v in h.values()}), len(h), 'tensors')" \
                "/tmp/run_$options/checkpoints/checkpoint_50/*.safetensors"
        done
        ;;
    *) echo "unknown section $section (checks said mfu mfuprof said512 fastfood mnist trainer)"; exit 2 ;;
    esac
done
