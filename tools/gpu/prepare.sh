#!/usr/bin/env bash
# Everything a GPU lease needs, made here first (no GPU, no internet): the CUDA build of
# fgclip without Open MPI, packed with its FFmpeg libraries (tools/gpu/bundle.sh), and the
# 10-minute 640x360 H.264 video `detect` is timed on, in .gpu/ (git-ignored; hand the two
# files to the device run with `carry: [".gpu/bundle.tar.xz",
# ".gpu/bench_600s_640x360_h264.mp4"]`, 64 MiB at most). Then, on the GPU machine:
#   tools/gpu/check.sh 540        (see its header for the steps)
# A try of check.sh's plumbing on this machine: FGCLIP_DEVICE=cpu P16=tiny P32=tiny with a
# bundle of the CPU binary (BUNDLE=...).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CUDA_TARGET:-/work/target-cuda}
DOCS_RS=1 CUDARC_CUDA_VERSION=13000 cargo build --release -p fgclip-vad --no-default-features --features cuda \
  --target-dir "$target"
tools/gpu/bundle.sh "$target/release/fgclip" .gpu
video=.gpu/bench_600s_640x360_h264.mp4
if [ ! -f "$video" ]; then
  # bench detect writes its synthetic video to --keep; the tiny model's run is incidental.
  cargo run --release -q -p fgclip-vad -- --quiet bench detect --preset tiny --seconds 600 --keep .gpu \
    --stride 64 >/dev/null
fi
ls -la .gpu/bundle.tar.xz "$video"
total=$(du -cb .gpu/bundle.tar.xz "$video" | tail -1 | cut -f1)
echo "to carry: $((total / 1024 / 1024)) MiB (limit 64): .gpu/bundle.tar.xz $video"
