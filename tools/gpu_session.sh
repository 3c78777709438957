#!/bin/sh
# The GPU measurements (latency, throughput, full-length training), for an offline GPU machine.
# Pack first, here: `python tools/gpu_pack.py --data ../shared/data --categories
# loco_juice_bottle mvtec3d_tire`; then, on the GPU machine with `.gpu/` copied beside the checkout:
#
#   sh tools/gpu_session.sh bench            GPU tests; PatchCore (Lite0, wide_resnet50_2 shape)
#                                            and EfficientAD-S latency / throughput through the
#                                            torch backend (FP16 and FP32); search placements
#   sh tools/gpu_session.sh train CATEGORY   full-length PUAD-S training (EfficientAD-S is the
#                                            same run without the Gaussian), then export,
#                                            parity FP32/FP16 and bench of both
#
# Where one command may run at most 10 minutes: `train` stops itself after EDGEAD_TIME_S (default 540)
# and resumes from its checkpoint when called again while the machine is still warm (it is
# given back 30 s after a call). Results go to $OUT (at most 8 files come back: logs are
# appended to one file per step). Settings: EDGEAD_DEVICE (cuda), EDGEAD_STEPS (70000),
# EDGEAD_TEACHER_STEPS (10000), EDGEAD_BATCHES (1,16,64), EDGEAD_IMAGE_SIZE (256),
# EDGEAD_CORESET (0.1), EDGEAD_PRECISIONS ("fp16 fp32"; the torch backend runs FP16 on CUDA
# only), EDGEAD_WORK (/tmp/edgead-work), EDGEAD_KIT (.gpu).
# A CPU smoke run of the plumbing:
#   EDGEAD_DEVICE=cpu EDGEAD_PRECISIONS=fp32 EDGEAD_STEPS=20 EDGEAD_TEACHER_STEPS=5 \
#     EDGEAD_BATCHES=1,2 EDGEAD_IMAGE_SIZE=64 EDGEAD_CORESET=0.001 OUT=/tmp/out \
#     sh tools/gpu_session.sh bench
set -eu

KIT=${EDGEAD_KIT:-.gpu}
OUT=${OUT:-/tmp/edgead-out}
WORK=${EDGEAD_WORK:-/tmp/edgead-work}
DEVICE=${EDGEAD_DEVICE:-cuda}
STEPS=${EDGEAD_STEPS:-70000}
TEACHER_STEPS=${EDGEAD_TEACHER_STEPS:-10000}
BATCHES=${EDGEAD_BATCHES:-1,16,64}
SIZE=${EDGEAD_IMAGE_SIZE:-256}
TIME_S=${EDGEAD_TIME_S:-540}
CORESET=${EDGEAD_CORESET:-0.1}
PRECISIONS=${EDGEAD_PRECISIONS:-fp16 fp32}
JUICE=$KIT/data/loco_juice_bottle
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1

if ls "$KIT"/whl/*.whl >/dev/null 2>&1 && ! python3 -c "import faiss" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/edgead-site \
        "$KIT"/whl/*.whl
    export PYTHONPATH="/tmp/edgead-site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
edgead() { python3 -m edgead "$@"; }

# bench BUNDLE NAME: both precisions through the torch backend, JSON into $OUT/bench.jsonl
bench_bundle() {
    for precision in $PRECISIONS; do
        if ! edgead bench "$1" --data "$JUICE" --backend torch --device "$DEVICE" \
            --precision "$precision" --batch "$BATCHES" --format json --out "$WORK/b" >/dev/null
        then
            echo "BENCH FAILED: $2 $precision"
            continue
        fi
        python3 - "$WORK/b/bench.json" "$2" "$OUT/bench.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["name"] = sys.argv[2]
open(sys.argv[3], "a").write(json.dumps(r) + "\n")
stages = " ".join(f"{k} {v['p50']:.2f}" for k, v in r["latency_ms"].items())
lat = r["latency_ms"]
h2h = lat["total"]["p50"] - lat.get("decode", {}).get("p50", 0.0)
rates = ", ".join(f"batch {b}: {v:.0f} img/s" for b, v in r["throughput"].items())
split = "; ".join(
    f"b{b}: " + " ".join(f"{k} {v:.3f}" for k, v in st.items())
    for b, st in r.get("batch_stages_ms", {}).items()
)
print(f"{r['name']} {r['precision']} [{r['backend']}] p50 ms: {stages}; host-to-host "
      f"{h2h:.2f}; {rates}; ms/img {split}")
PY
    done
}

step_bench() {
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    # PatchCore, Lite0: memory bank searched by the runtime (torch-cuda), and in the graph
    edgead -q export patchcore --data "$JUICE" --out "$WORK/pc_lite0" --coreset-ratio "$CORESET" \
        --device "$DEVICE" --torch-graph --overwrite
    python3 -c "import json,sys; f=json.load(open(sys.argv[1]))['fit']; print('fit', f)" \
        "$WORK/pc_lite0/manifest.json"
    bench_bundle "$WORK/pc_lite0" patchcore-lite0
    edgead -q export patchcore --data "$JUICE" --out "$WORK/pc_lite0_graph" \
        --coreset-ratio "$CORESET" --device "$DEVICE" --torch-graph --search graph --overwrite
    bench_bundle "$WORK/pc_lite0_graph" patchcore-lite0-ingraph
    # latency does not depend on how long it trained: a short run gives the networks
    edgead -q export efficientad --data "$JUICE" --out "$WORK/ead_s" --steps 200 \
        --teacher-steps 50 --image-size "$SIZE" --device "$DEVICE" --torch-graph --no-fp16 \
        --overwrite
    bench_bundle "$WORK/ead_s" efficientad-s
    for b in pc_lite0 pc_lite0_graph; do
        for precision in $PRECISIONS; do
            edgead parity "$WORK/$b" "$JUICE" --backend torch --device "$DEVICE" \
                --precision "$precision" --json "$OUT/parity.jsonl.tmp" >/dev/null || true
            python3 - "$OUT/parity.jsonl.tmp" "$b-$precision" "$OUT/parity.jsonl" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError) as exc:
    r = {"error": str(exc)}
r["name"] = sys.argv[2]
open(sys.argv[3], "a").write(json.dumps(r) + "\n")
print("parity", sys.argv[2], r.get("passed"), [(x.get("check"), x.get("ok")) for x in r.get("rows", [])])
PY
        done
    done
    rm -f "$OUT/parity.jsonl.tmp"
    timeout "${EDGEAD_TEST_S:-240}" python3 -m pytest -m gpu tests -q -p no:cacheprovider -rs -x \
        || echo "GPU TESTS FAILED OR TIMED OUT"
    python3 benchmarks/coreset.py --data "$JUICE" --device "$DEVICE" \
        --scale "${EDGEAD_CORESET_SCALE:-550000}" \
        --ratio "$CORESET" --json "$OUT/coreset.json" || echo "CORESET BENCHMARK FAILED"
    edgead -q export patchcore --data "$JUICE" --out "$WORK/pc_wrn50" --coreset-ratio "$CORESET" \
        --backbone wide_resnet50_2 --weights none --device "$DEVICE" --torch-graph \
        --search graph --overwrite
    bench_bundle "$WORK/pc_wrn50" patchcore-wrn50-random-weights-ingraph
    python3 -m pytest benchmarks/test_search_placement.py -q -p no:cacheprovider \
        --benchmark-json "$OUT/search.json" --benchmark-columns=median,iqr,ops
}

# the short form, for a second call: PatchCore (search in the graph) and EfficientAD-S benched,
# PatchCore parity at both precisions on the GPU, then the GPU tests; timestamps in the log
step_quick() {
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    echo "t0 $(date +%s)"
    edgead -q export patchcore --data "$JUICE" --out "$WORK/pc_lite0_graph" \
        --coreset-ratio "$CORESET" --device "$DEVICE" --torch-graph --search graph --overwrite
    echo "exported $(date +%s)"
    bench_bundle "$WORK/pc_lite0_graph" patchcore-lite0-ingraph
    echo "benched $(date +%s)"
    for precision in $PRECISIONS; do
        edgead parity "$WORK/pc_lite0_graph" "$JUICE" --backend torch --device "$DEVICE" \
            --precision "$precision" --json "$OUT/parity_$precision.json" | tail -12 || true
    done
    echo "parity $(date +%s)"
    edgead -q export efficientad --data "$JUICE" --out "$WORK/ead_s" --steps 200 \
        --teacher-steps 50 --image-size "$SIZE" --device "$DEVICE" --torch-graph --no-fp16 \
        --overwrite
    PRECISIONS=fp16 bench_bundle "$WORK/ead_s" efficientad-s
    echo "efficientad $(date +%s)"
    timeout "${EDGEAD_TEST_S:-240}" python3 -m pytest -m gpu tests -q -p no:cacheprovider -rs \
        || echo "GPU TESTS FAILED OR TIMED OUT"
    echo "tests $(date +%s)"
}

step_train() {
    category=${1:?train needs a category, e.g. loco_juice_bottle}
    data=$KIT/data/$category
    model=$WORK/puad_$category
    status=0
    timeout "$TIME_S" python3 -m edgead fit puad --data "$data" --out "$model" \
        --steps "$STEPS" --teacher-steps "$TEACHER_STEPS" --image-size "$SIZE" \
        --device "$DEVICE" --checkpoint "$model.ckpt" || status=$?
    if [ "$status" = 124 ]; then
        echo "TRAINING INTERRUPTED after ${TIME_S}s: call again to resume from $model.ckpt"
        return 0
    fi
    [ "$status" = 0 ] || exit "$status"
    python3 benchmarks/efficientad_from_puad.py "$model" "$data" --out "$WORK/ead_$category"
    for name in puad ead; do
        bundle=$WORK/${name}_${category}_bundle
        detector=$([ "$name" = puad ] && echo puad || echo efficientad)
        edgead -q export "$detector" --model "$WORK/${name}_$category" --out "$bundle" \
            --torch-graph --overwrite ||
            edgead -q export "$detector" --model "$WORK/${name}_$category" --out "$bundle" \
                --torch-graph --no-fp16 --overwrite
        for precision in fp32 fp16; do
            edgead parity "$bundle" "$data" --precision "$precision" \
                --json "$OUT/parity_${name}_${category}_$precision.json" || true
        done
        bench_bundle "$bundle" "${name}-$category"
    done
}

step=${1:?usage: gpu_session.sh bench | train CATEGORY}
shift
case $step in
    bench) step_bench 2>&1 | tee -a "$OUT/bench.log" ;;
    quick) step_quick 2>&1 | tee -a "$OUT/quick.log" ;;
    train) step_train "$@" 2>&1 | tee -a "$OUT/train_$1.log" ;;
    *) echo "unknown step $step: bench or train CATEGORY" >&2; exit 2 ;;
esac
