#!/usr/bin/env bash
# GPU checks of a `--features cuda` build, run on a machine with an NVIDIA GPU, CUDA's
# Python wheels (nvidia/cu13: NVRTC, headers) and PyTorch, but no Rust or FFmpeg.
# Build and pack here first:
#   DOCS_RS=1 CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=/work/target-cuda \
#     cargo build --release --features cuda -p fgclip-vad
#   tools/gpu/bundle.sh /work/target-cuda/release/fgclip .gpu
# then, there, from the repository root: `tools/gpu/check.sh [SECONDS]`. Logs and
# results go to $OUT (default /tmp/gpu-out); SECONDS (default 470) bounds the whole run,
# the optional demo last gets what is left.
set -u
start=$(date +%s)
budget=${1:-470}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
left() { echo $((budget - ($(date +%s) - start))); }
step() { echo; echo "== $(date +%T) [$(($(date +%s) - start)) s] $*"; }

step "unpack"
tar -C "$work" -xJf .gpu/bundle.tar.xz || exit 1
B=$work/bundle
cu=""
for c in $(python3 -c 'import nvidia; print(*[p + "/cu13" for p in nvidia.__path__])' 2>/dev/null) /usr/local/cuda; do
  if [ -f "$c/include/cuda_fp16.h" ] && ls "$c"/lib*/libnvrtc.so* >/dev/null 2>&1; then cu=$c; break; fi
done
[ -n "$cu" ] || { echo "no CUDA toolkit with NVRTC and cuda_fp16.h found"; exit 1; }
echo "CUDA from $cu"
export CUDA_PATH=$cu LD_LIBRARY_PATH=$B/lib:$(echo "$cu"/lib*/ | tr ' ' ':')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
F=("$B/fgclip" --device cuda --quiet)
"${F[@]}" --version

step "embed on clip_tiny vs transformers (tests/fixtures/clip_tiny)"
python3 tools/gpu/compare.py prep "$work"
timeout 120 "${F[@]}" embed --model tests/fixtures/clip_tiny --pixels "$work/pixels.safetensors" \
  --texts "$work/captions.txt" --out "$work/embed.safetensors" --batch-size 1 &&
  python3 tools/gpu/compare.py embed "$work/embed.safetensors" | tee "$OUT/embed_check.txt"

step "check-loss vs the float64 reference batch (tests/fixtures/fgclip_batch)"
timeout 120 "${F[@]}" check-loss --model tests/fixtures/clip_tiny --batch tests/fixtures/fgclip_batch/batch.safetensors \
  --region-weight 0.1 --grads "$work/grads.safetensors" >"$work/loss.json" &&
  python3 tools/gpu/compare.py loss "$work/loss.json" "$work/grads.safetensors" | tee "$OUT/loss_check.txt"

step "bench embed ViT-B/32 batch 16: fgclip, then PyTorch"
timeout 150 "${F[@]}" bench embed --preset vit-b-32 --batch 16 --iters 10 | tee "$OUT/bench_embed.txt"
timeout 90 python3 bench/embed_torch.py configs/vit-b-32.json --batch 16 --iters 10 --device cuda | tee -a "$OUT/bench_embed.txt"

step "bench train ViT-B/32 4 clips x 8 frames: fgclip, then PyTorch"
timeout 200 "${F[@]}" bench train --preset vit-b-32 --batch 4 --frames 8 --warmup 2 --iters 5 | tee "$OUT/bench_train.txt"
timeout 90 python3 bench/train_torch.py configs/vit-b-32.json --batch 4 --frames 8 --warmup 2 --iters 5 --device cuda | tee -a "$OUT/bench_train.txt"

if [ "$(left)" -gt 90 ]; then
  step "demo (synth, train, detect, eval) with $(left) s left"
  timeout "$(left)" "$B/fgclip" --device cuda demo --out "$work/demo" 2>&1 | tail -20 | tee "$OUT/demo.txt"
  cp "$work"/demo/*.json "$work"/demo/run/metrics.jsonl "$OUT/" 2>/dev/null
fi
step "done"
