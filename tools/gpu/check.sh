#!/usr/bin/env bash
# GPU checks of a `--no-default-features --features cuda` build, run on a machine with an NVIDIA GPU, a CUDA
# toolkit (NVRTC, headers with CCCL) and PyTorch, but no Rust or FFmpeg. Build and pack
# here first (tools/gpu/bundle.sh says how), then, there, from the repository root:
#
#   tools/gpu/check.sh [SECONDS] [STEPS...]
#
# SECONDS (default 540) bounds the whole run; STEPS (default: parwarm cold timed detect
# embed profile, in this order) are
#   parwarm  bare machine: `fgclip warmup` (parallel processes) for the ViT-B/16 bf16 8 x 8
#            step on a fresh cache, alone, then that step's first step: the #30 goals are
#            warm-up + first step <= 60 s, and <= 10 s to the first step on the warm cache
#   cold     every other cold job at once, as separate processes sharing one kernel cache:
#            correctness (embed / check-loss CLIP and FG-CLIP v1 / check-roi against the
#            fixtures) with cuBLAS in exact f32 (CPU tolerances) and in TF32 (TF32
#            tolerances), bf16 check-loss and detect against f32, and one untimed run of
#            each shape the timed step measures (filling the cache)
#   timed    one by one on the warm cache: bench train ViT-B/16 8 clips x 8 frames with
#            cuBLAS bf16 / TF32 / exact f32 and cubecl bf16, then PyTorch bf16 autocast,
#            f32 with TF32 and exact f32 (bench/train_torch.py)
#   detect   bench detect on the bundled 10-minute video, ViT-B/32: frames/s, decode share
#   embed    bench embed ViT-B/16 batch 16 (f32 and bf16, $MATMUL) beside PyTorch (TF32, bf16)
#   profile  the kernel-time breakdown of one warm cuBLAS bf16 step (cubecl's kernels;
#            cuBLAS's products and waits are counted by fgclip itself, in `timed`)
# and, only when named: warm (first ViT-B/32 step, fresh cache then warm, cubecl). MATMUL
# (default cublas) picks the kernels of parwarm, detect, embed and profile. All use
# autotune level minimal.
# Budget facts from the first H100 runs (2026-11-27): NVRTC compiles a kernel in ~0.6 s
# and a cold process compiles ~200 of them (half matmul autotune candidates), so the
# tiny-model `embed` takes ~115 s cold and 5 s with a warm cache; a cold `check-loss`
# (forward + backward) needs more than 240 s. Caches are keyed by the binary's build id:
# KERNELS only helps with the same binary.
# Each step is time-boxed and prints its result as it goes; $OUT (default /tmp/gpu-out)
# receives summary.txt (one line per result), logs.tar.xz (every log and JSON) and
# kernels.tar.xz (the kernel caches, to study or to ship pre-warmed). KERNELS=FILE starts
# from such caches (one compiled by the same binary on the same GPU model).
set -u
start=$(date +%s)
budget=${1:-540}
shift || true
steps=${*:-parwarm cold timed detect embed profile}
MATMUL=${MATMUL:-cublas}
OUT=${OUT:-/tmp/gpu-out}
# FGCLIP_DEVICE=cpu tries the script itself on a machine without a GPU.
DEV=${FGCLIP_DEVICE:-cuda}
# The presets measured (P32=tiny P16=tiny for such a try).
P32=${P32:-vit-b-32} P16=${P16:-vit-b-16}
mkdir -p "$OUT"
R=$(pwd)
work=$(mktemp -d)
L=$work/logs
mkdir -p "$L"
left() { echo $((budget - ($(date +%s) - start))); }
# within LIMIT CMD...: run CMD for at most LIMIT seconds and never past the budget (the
# last 25 s are kept for packing the results).
within() {
  local t=$1; shift
  local l=$(($(left) - 25))
  [ "$l" -lt "$t" ] && t=$l
  [ "$t" -gt 5 ] || { echo "skipped (out of time): $*" | tee -a "$OUT/summary.txt" >&2; return 1; }
  # Job control gives CMD a process group of its own, so the watchdog stops CMD and
  # everything it started (CMD may be one of the functions below).
  set -m
  "$@" &
  local pid=$!
  ( sleep "$t"; kill -TERM -- -"$pid"; sleep 5; kill -KILL -- -"$pid" ) >/dev/null 2>&1 &
  local dog=$!
  set +m
  wait "$pid"
  local rc=$?
  kill -- -"$dog" 2>/dev/null
  [ $rc -eq 143 ] || [ $rc -eq 137 ] && { echo "timed out after $t s: $*" | tee -a "$OUT/summary.txt" >&2; rc=124; }
  return $rc
}
step() { echo; echo "== $(date +%T) [$(($(date +%s) - start)) s] $*"; }
note() { echo "$*" | tee -a "$OUT/summary.txt"; }
want() { case " $steps " in *" $1 "*) return 0;; esac; return 1; }
pack() {
  step "packing results"
  cp "$OUT/summary.txt" "$L/" 2>/dev/null
  tar -C "$work" -cJf "$OUT/logs.tar.xz" logs 2>/dev/null
  XZ_OPT=-1 tar -C "$work" -cJf "$OUT/kernels.tar.xz" $(cd "$work" && ls -d kc-* 2>/dev/null) 2>/dev/null
  ls -la "$OUT"
}
trap pack EXIT

step "unpack"
tar -C "$work" -xJf "${BUNDLE:-.gpu/bundle.tar.xz}" || exit 1
B=$work/bundle
[ -n "${KERNELS:-}" ] && { tar -C "$work" -xJf "$KERNELS" && echo "kernel caches from $KERNELS: $(cd "$work" && ls -d kc-*)"; }
# A CUDA folder for NVRTC: cuda_fp16.h, CCCL's nv/target (the matmul kernels include it)
# and libnvrtc. Python's nvidia/cu13 wheels may lack CCCL: then merge one found elsewhere.
has_cccl() { [ -f "$1/include/nv/target" ] || [ -f "$1/include/cccl/nv/target" ]; }
usable() { [ -f "$1/include/cuda_fp16.h" ] && ls "$1"/lib*/libnvrtc.so* >/dev/null 2>&1; }
[ "$DEV" = cpu ] && cands="" || cands="/usr/local/cuda $(python3 -c 'import nvidia; print(*[p + "/cu13" for p in nvidia.__path__])' 2>/dev/null)"
cu=""
for c in $cands; do if usable "$c" && has_cccl "$c"; then cu=$c; break; fi; done
if [ -z "$cu" ] && [ "$DEV" != cpu ]; then
  for c in $cands; do if usable "$c"; then base=$c; break; fi; done
  [ -n "${base:-}" ] || [ "$DEV" = cpu ] || { echo "no CUDA folder with NVRTC and cuda_fp16.h in: $cands"; exit 1; }
  nvt=$(find /usr /opt -path '*/nv/target' -print -quit 2>/dev/null)
  [ -n "$nvt" ] || { echo "no CCCL (nv/target) anywhere under /usr, /opt"; exit 1; }
  cu=$work/cuda
  mkdir -p "$cu/include"
  for e in "$base"/include/*; do ln -s "$e" "$cu/include/"; done
  rm -f "$cu/include/cccl"
  ln -s "$(dirname "$(dirname "$nvt")")" "$cu/include/cccl"
  for l in "$base"/lib*; do ln -s "$l" "$cu/"; done
  echo "CUDA headers from $base, CCCL from $(dirname "$(dirname "$nvt")")"
fi
echo "CUDA from $cu"
export CUDA_PATH=$cu LD_LIBRARY_PATH=$B/lib:$(echo "$cu"/lib*/ | tr ' ' ':')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
# TF32 tolerances for compare.py where the products ran in TF32: tf32 CMD...
tf32() { if [ "$DEV" = cpu ]; then "$@"; else FGCLIP_TF32=1 "$@"; fi; }
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)
note "GPU: $gpu; $(python3 -c 'import torch; print("torch", torch.__version__)' 2>&1); $("$B/fgclip" --version)"
FIX=$R/tests/fixtures

# fgclip in a folder of its own whose cubecl.toml logs compiled kernels (and, with a
# third argument, kernel times) to files in $L: run_in NAME CACHE [profile] -- ARGS...
run_in() {
  local name=$1 cache=$2 prof=""; shift 2
  [ "$1" = profile ] && { prof=1; shift; }
  [ "$1" = -- ] && shift
  local d=$work/cwd-$name
  mkdir -p "$d"
  {
    echo "[compilation]"
    echo "logger = { level = \"basic\", file = \"$L/$name.compile.log\", append = false }"
    if [ -n "$prof" ]; then
      echo "[profiling]"
      echo "logger = { level = \"basic\", file = \"$L/$name.profile.log\", append = false }"
    fi
  } >"$d/cubecl.toml"
  (cd "$d" && CUDA_CACHE_PATH=$work/nv-$cache "$B/fgclip" --device "$DEV" --quiet --kernel-cache "$work/kc-$cache" "$@")
}
compiled() { cat "$L/$1.compile.log" 2>/dev/null | grep -c . ; }

# The time a bench JSON reports, one line: result LABEL JSON [KERNELS-COMPILED]
result() {
  python3 - "$@" <<'EOF'
import json, sys
label = sys.argv[1]
try:
    r = json.load(open(sys.argv[2]))
    s = r["step"]
    k = f", {sys.argv[3]} kernels compiled" if len(sys.argv) > 3 else ""
    sp = r.get("split", {})
    blas = (f"; cuBLAS {sp['cublas_products']:.0f} products {sp['cublas_gemm_ms']:.1f} ms, "
            f"waiting for cubecl {sp['cublas_queue_wait_ms']:.1f} ms") if sp.get("cublas_products") else ""
    if not blas and r.get("matmul", "").startswith("cublas"):
        blas = "; cuBLAS NOT USED (a CPU run, or it gave up: its stderr says why)"
    print(f"{label}: fgclip {r['precision']} {r.get('matmul', '?')}: train step median {s['median_ms']:.1f} ms "
          f"(min {s['min_ms']:.1f}, max {s['max_ms']:.1f}; forward {sp.get('forward_ms', 0):.1f}, backward "
          f"{sp.get('backward_ms', 0):.1f}, optimizer {sp.get('optimizer_ms', 0):.1f}{blas}), "
          f"first step after {r['to_first_step_s']:.1f} s{k}")
except Exception as e:
    print(f"{label}: no result ({e})")
EOF
}
# B/16 8 x 8 step arguments (--pad-text: captions padded to 77, as train_torch.py pads them).
STEP16="bench train --preset $P16 --batch 8 --frames 8 --pad-text"

if want parwarm; then
  step "parallel warm-up, bare machine: fgclip warmup ViT-B/16 bf16 8 x 8 ($MATMUL), fresh cache, alone"
  t0=$(date +%s.%N)
  within 150 run_in parwarm main -- --autotune minimal --matmul $MATMUL --precision bf16 warmup --preset $P16 \
    --batch 8 --frames 8 --timeout 140 --json >"$L/parwarm.json"
  t1=$(date +%s.%N)
  within 90 run_in parwarm-step main -- --autotune minimal --matmul $MATMUL --precision bf16 $STEP16 \
    --warmup 1 --iters 2 --json >"$L/parwarm_step.json"
  python3 - "$L/parwarm.json" "$L/parwarm_step.json" "$t0" "$t1" "$(compiled parwarm-step)" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
try:
    w = json.load(open(sys.argv[1]))
    jobs = ", ".join(f"{j['job']} {j['seconds']:.0f} s ({j['status']})" for j in w["jobs"])
    print(f"  warmup: {float(sys.argv[4]) - float(sys.argv[3]):.1f} s ({jobs})")
    r = json.load(open(sys.argv[2]))
    total = float(sys.argv[4]) - float(sys.argv[3]) + r["to_first_step_s"]
    print(f"  then the run: first step after {r['to_first_step_s']:.1f} s (goal <= 10 s), {sys.argv[5]} kernels still compiled; "
          f"warm-up + first step {total:.1f} s (goal <= 60 s); {r['step']['median_ms']:.1f} ms/step")
except Exception as e:
    print(f"  parallel warm-up: no result ({e})")
EOF
fi

if want cold; then
  step "cold jobs at once: correctness (cuBLAS exact f32 and TF32), bf16, and the timed shapes"
  python3 tools/gpu/compare.py prep "$work"
  # correct MODE: the fixture checks with --matmul MODE, each a process of its own; exact
  # f32 is held to the CPU tolerances, TF32 to TF32's.
  correct() {
    local m=$1 w=$work/$1 cmp="python3 tools/gpu/compare.py"
    [ "$m" = cublas-f32 ] || cmp="tf32 python3 tools/gpu/compare.py"
    mkdir -p "$w"
    local g="--autotune minimal --matmul $m"
    { within 200 run_in embed-$m main -- $g embed --model "$FIX/clip_tiny" --pixels "$work/pixels.safetensors" \
        --texts "$work/captions.txt" --out "$w/embed.safetensors" --batch-size 1 &&
        $cmp embed "$w/embed.safetensors" | sed "s/^/[$m] /" | tee -a "$OUT/summary.txt"; } &
    { within 200 run_in loss-$m main -- $g check-loss --model "$FIX/clip_tiny" \
        --batch "$FIX/fgclip_batch/batch.safetensors" --region-weight 0.1 --grads "$w/grads.safetensors" >"$L/loss_$m.json" &&
        $cmp loss "$L/loss_$m.json" "$w/grads.safetensors" | sed "s/^/[$m] /" | tee -a "$OUT/summary.txt"; } &
    { within 200 run_in v1-$m main -- $g check-loss --model "$FIX/fgclip_v1_tiny/model" \
        --batch "$FIX/fgclip_v1_tiny/batch.safetensors" >"$L/loss_v1_$m.json" &&
        $cmp fgclip_v1 "$L/loss_v1_$m.json" | sed "s/^/[$m] /" | tee -a "$OUT/summary.txt"; } &
    { within 200 run_in roi-$m main -- $g check-roi --cases "$FIX/roi_align" --out "$w/roi.safetensors" &&
        $cmp roi "$w/roi.safetensors" | sed "s/^/[$m] /" | tee -a "$OUT/summary.txt"; } &
  }
  correct cublas-f32
  correct cublas
  # bf16 against f32 (cuBLAS TF32): the loss within 2 %, detect's classes.
  { within 200 run_in loss16 main -- --autotune minimal --matmul cublas --precision bf16 check-loss \
      --model "$FIX/clip_tiny" --batch "$FIX/fgclip_batch/batch.safetensors" --region-weight 0.1 >"$L/loss_bf16.json"; } &
  for p in f32 bf16; do
    { within 200 run_in detect-$p main -- --autotune minimal --matmul cublas --precision $p detect --model "$FIX/clip_tiny" \
        "$FIX/videos/testsrc_h264.mp4" --out "$work/det-$p" --stride 32 >/dev/null; } &
  done
  # The timed shapes, untimed (parwarm filled the cuBLAS bf16 step's; cubecl's cold start
  # is the longest, so it gets the parallel warm-up too), and detect's batch.
  { within 200 run_in fill-cubecl main -- --autotune minimal --matmul cubecl --precision bf16 warmup --preset $P16 \
      --batch 8 --frames 8 --timeout 190 --json >"$L/fill_cubecl.json"; } &
  for pm in f32:cublas; do
    { within 200 run_in fill-${pm/:/-} main -- --autotune minimal --matmul ${pm#*:} --precision ${pm%:*} $STEP16 \
        --warmup 0 --iters 1 --json >"$L/fill_${pm/:/_}.json"
      result "  cold ${pm/:/ }" "$L/fill_${pm/:/_}.json" "$(compiled fill-${pm/:/-})" | tee -a "$OUT/summary.txt"; } &
  done
  { within 200 run_in fill-detect main -- --autotune minimal --matmul $MATMUL --precision bf16 bench embed --preset $P32 \
      --batch 32 --warmup 1 --iters 1 >/dev/null; } &
  for p in f32 bf16; do
    { within 200 run_in fill-embed-$p main -- --autotune minimal --matmul $MATMUL --precision $p bench embed --preset $P16 \
        --batch 16 --warmup 1 --iters 1 >/dev/null; } &
  done
  wait
  python3 - "$L/loss_cublas.json" "$L/loss_bf16.json" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
try:
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    d = abs(a["loss"] - b["loss"])
    print(f"{'ok  ' if d <= 0.02 * abs(a['loss']) else 'FAIL'} bf16 loss {b['loss']:.6f} vs f32 {a['loss']:.6f}: difference {d:.3g} (tolerance 2% of f32)")
except Exception as e:
    print(f"FAIL bf16 loss: no result ({e})")
EOF
  python3 tools/gpu/compare.py classes "$work/det-f32/testsrc_h264.json" "$work/det-bf16/testsrc_h264.json" | tee -a "$OUT/summary.txt"
  note "  kernels compiled: $(for f in "$L"/*.compile.log; do [ -f "$f" ] && printf '%s %s, ' "$(basename "$f" .compile.log)" "$(grep -c . "$f")"; done)"
fi

if want timed; then
  step "speed: bench train ViT-B/16, 8 clips x 8 frames, warm, one by one; then PyTorch"
  for pm in bf16:cublas f32:cublas f32:cublas-f32 bf16:cubecl; do
    within 60 run_in timed-${pm/:/-} main -- --autotune minimal --matmul ${pm#*:} --precision ${pm%:*} $STEP16 \
      --warmup 2 --iters 5 --json >"$L/timed_${pm/:/_}.json"
    result "  warm" "$L/timed_${pm/:/_}.json" "$(compiled timed-${pm/:/-})" | tee -a "$OUT/summary.txt"
  done
  for pt in "bf16" "f32 --tf32" "f32"; do
    within 60 python3 bench/train_torch.py configs/$P16.json --batch 8 --frames 8 --warmup 2 --iters 5 \
      --device cuda --precision $pt 2>&1 | tail -1 | sed 's/^/  /' | tee -a "$OUT/summary.txt"
  done
fi

if want detect; then
  step "detect: 10-minute 640x360 H.264 video, ViT-B/32 bf16 ($MATMUL), stride 16"
  v=$(ls .gpu/*.mp4 2>/dev/null | head -1)
  if [ -n "$v" ]; then
    nproc | sed 's/^/CPU cores: /' | tee -a "$OUT/summary.txt"
    within 100 run_in detect10 main -- --autotune minimal --matmul $MATMUL --precision bf16 bench detect "$R/$v" \
      --preset $P32 --stride 16 --batch 32 | tee -a "$OUT/summary.txt"
  else
    note "detect: no video in .gpu/"
  fi
fi

if want embed; then
  step "speed: bench embed ViT-B/16 batch 16 ($MATMUL), fgclip beside PyTorch"
  for p in f32 bf16; do
    within 60 run_in embed-$p main -- --autotune minimal --matmul $MATMUL --precision $p bench embed --preset $P16 \
      --batch 16 --warmup 2 --iters 5 | tee -a "$OUT/summary.txt"
    within 45 python3 bench/embed_torch.py configs/$P16.json --batch 16 --warmup 2 --iters 5 --device cuda \
      --precision $p --tf32 2>&1 | tail -4 | tee -a "$OUT/summary.txt"
  done
fi

if want profile; then
  step "speed: kernel times of one warm bf16 step ($MATMUL; cubecl's kernels only)"
  within 60 run_in profile main profile -- --autotune minimal --matmul $MATMUL --precision bf16 $STEP16 \
    --warmup 1 --iters 1 --json >"$L/profile_step.json"
  python3 - "$L/profile.profile.log" "$L/profile_step.json" <<'EOF' | tee -a "$OUT/summary.txt" "$L/profile_summary.txt"
import collections, json, re, sys
unit = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}
tot, cnt = collections.Counter(), collections.Counter()
try:
    for line in open(sys.argv[1], errors="replace"):
        m = re.match(r"\|\s*([\d.]+)(ns|µs|us|ms|s)\s*\|\s*(.+)", line)
        if not m:
            continue
        name = re.split(r"[<({\[ ]", m.group(3).strip())[0]
        tot[name] += float(m.group(1)) * unit[m.group(2)]
        cnt[name] += 1
except OSError as e:
    print(f"no profile ({e})")
all_ms = sum(tot.values())
try:
    r = json.load(open(sys.argv[2]))
    print(f"profiled run (2 steps, profiling on): step median {r['step']['median_ms']:.1f} ms")
except Exception:
    pass
print(f"cubecl kernel time over the profiled steps: {all_ms:.1f} ms in {sum(cnt.values())} launches "
      f"(cuBLAS's products and the waits around them are the rest); top kernels:")
for name, ms in tot.most_common(15):
    print(f"  {ms:9.2f} ms {100 * ms / max(all_ms, 1e-9):5.1f}%  {cnt[name]:6d}x  {name}")
EOF
fi

if want warm; then
  step "warm-up: first ViT-B/32 training step (4 clips x 8 frames, cubecl), fresh caches, then again"
  for run in ${WARM_RUNS:-cold warm}; do
    within 180 run_in warm-$run b32 -- --autotune minimal --matmul cubecl bench train --preset $P32 --batch 4 --frames 8 \
      --warmup 1 --iters 2 --json >"$L/warm_$run.json"
    result "  $run run" "$L/warm_$run.json" "$(compiled warm-$run)" | tee -a "$OUT/summary.txt"
  done
fi

step "done"
