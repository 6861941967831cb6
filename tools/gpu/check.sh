#!/usr/bin/env bash
# GPU checks of a `--features cuda` build, run on a machine with an NVIDIA GPU, CUDA's
# Python wheels (nvidia/cu13: NVRTC, headers) and PyTorch, but no Rust or FFmpeg.
# Build and pack here first:
#   DOCS_RS=1 CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=/work/target-cuda \
#     cargo build --release --features cuda -p fgclip-vad
#   tools/gpu/bundle.sh /work/target-cuda/release/fgclip .gpu
# then, there, from the repository root: `tools/gpu/check.sh [SECONDS]`. Logs and
# results go to $OUT (default /tmp/gpu-out); SECONDS (default 560) bounds the whole run,
# the optional demo last gets what is left. The first kernels take minutes to compile
# (NVRTC + autotuning): the correctness steps use CUBECL_AUTOTUNE_LEVEL=minimal.
set -u
start=$(date +%s)
budget=${1:-560}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
left() { echo $((budget - ($(date +%s) - start))); }
# within LIMIT CMD...: run CMD for at most LIMIT seconds and never past the budget.
within() { local t=$1; shift; local l=$(($(left) - 5)); [ "$l" -lt "$t" ] && t=$l; [ "$t" -gt 10 ] || { echo "skipped: out of time"; return 1; }; timeout "$t" "$@"; local rc=$?; [ $rc -eq 124 ] && echo "timed out after $t s: $1 ${*:2:3}"; return $rc; }
step() { echo; echo "== $(date +%T) [$(($(date +%s) - start)) s] $*"; }

step "unpack"
tar -C "$work" -xJf .gpu/bundle.tar.xz || exit 1
B=$work/bundle
# A CUDA folder for NVRTC: cuda_fp16.h, CCCL's nv/target (the matmul kernels include it)
# and libnvrtc. Python's nvidia/cu13 wheels may lack CCCL: then merge one found elsewhere.
ls -d /usr/local/cuda* 2>&1 | head -3
has_cccl() { [ -f "$1/include/nv/target" ] || [ -f "$1/include/cccl/nv/target" ]; }
usable() { [ -f "$1/include/cuda_fp16.h" ] && ls "$1"/lib*/libnvrtc.so* >/dev/null 2>&1; }
cands="/usr/local/cuda $(python3 -c 'import nvidia; print(*[p + "/cu13" for p in nvidia.__path__])' 2>/dev/null)"
cu=""
for c in $cands; do if usable "$c" && has_cccl "$c"; then cu=$c; break; fi; done
if [ -z "$cu" ]; then
  for c in $cands; do if usable "$c"; then base=$c; break; fi; done
  [ -n "${base:-}" ] || { echo "no CUDA folder with NVRTC and cuda_fp16.h in: $cands"; exit 1; }
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
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
F=("$B/fgclip" --device cuda --quiet)
"${F[@]}" --version

step "embed on clip_tiny vs transformers (tests/fixtures/clip_tiny)"
python3 tools/gpu/compare.py prep "$work"
within 150 env CUBECL_AUTOTUNE_LEVEL=minimal "${F[@]}" embed --model tests/fixtures/clip_tiny --pixels "$work/pixels.safetensors" \
  --texts "$work/captions.txt" --out "$work/embed.safetensors" --batch-size 1 &&
  python3 tools/gpu/compare.py embed "$work/embed.safetensors" | tee "$OUT/embed_check.txt"

step "check-loss vs the float64 reference batch (tests/fixtures/fgclip_batch)"
within 150 env CUBECL_AUTOTUNE_LEVEL=minimal "${F[@]}" check-loss --model tests/fixtures/clip_tiny --batch tests/fixtures/fgclip_batch/batch.safetensors \
  --region-weight 0.1 --grads "$work/grads.safetensors" >"$work/loss.json" &&
  python3 tools/gpu/compare.py loss "$work/loss.json" "$work/grads.safetensors" | tee "$OUT/loss_check.txt"

step "bench train ViT-B/32 4 clips x 8 frames: fgclip, then PyTorch"
within 240 "${F[@]}" bench train --preset vit-b-32 --batch 4 --frames 8 --warmup 1 --iters 3 | tee "$OUT/bench_train.txt"
within 60 python3 bench/train_torch.py configs/vit-b-32.json --batch 4 --frames 8 --warmup 1 --iters 3 --device cuda | tee -a "$OUT/bench_train.txt"

step "bench embed ViT-B/32 batch 16: fgclip, then PyTorch"
within 150 "${F[@]}" bench embed --preset vit-b-32 --batch 16 --iters 5 | tee "$OUT/bench_embed.txt"
within 30 python3 bench/embed_torch.py configs/vit-b-32.json --batch 16 --iters 5 --device cuda | tee -a "$OUT/bench_embed.txt"

if [ "$(left)" -gt 90 ]; then
  step "demo (synth, train, detect, eval) with $(left) s left"
  within "$(left)" "$B/fgclip" --device cuda demo --out "$work/demo" 2>&1 | tail -20 | tee "$OUT/demo.txt"
  cp "$work"/demo/*.json "$work"/demo/run/metrics.jsonl "$OUT/" 2>/dev/null
fi
step "done"
