#!/usr/bin/env bash
# Packs a built fgclip for a GPU machine that has CUDA but no FFmpeg: the stripped
# binary, Debian's FFmpeg libraries (+ x264, soxr, gomp, zlib, bzip2, xz) and stub
# stand-ins for the other codec/network libraries they link (tools/gpu/stub_libs.py).
#   tools/gpu/bundle.sh [BINARY] [OUTDIR]   (defaults: target-cuda build, .gpu)
# The binary must be built without Open MPI (`-p fgclip-vad --no-default-features --features cuda`; without `-p` the Python crate turns
# Open MPI back on):
# the GPU machines have none.
# Unpack there with `tar xJf OUTDIR/bundle.tar.xz` and run with LD_LIBRARY_PATH=bundle/lib.
set -euo pipefail
bin=${1:-/work/target-cuda/release/fgclip}
out=${2:-.gpu}
lib=/lib/x86_64-linux-gnu
keep="libavcodec.so.59 libavformat.so.59 libavutil.so.57 libswscale.so.6 libswresample.so.4
      libx264.so.164 libsoxr.so.0 libgomp.so.1 libz.so.1 libbz2.so.1.0 liblzma.so.5"
keep=$(echo $keep)
glibc="libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2 libgcc_s.so.1 libstdc++.so.6"
if objdump -p "$bin" | awk '$1=="NEEDED"{print $2}' | grep -q '^libmpi'; then
  echo "$bin links Open MPI, which the GPU machine lacks: build it with -p fgclip-vad --no-default-features --features cuda" >&2
  exit 1
fi
rm -rf "$out/bundle" "$out/bundle.tar.xz"
mkdir -p "$out/bundle/lib"
strip -o "$out/bundle/fgclip" "$bin"
for l in $keep; do cp -L "$lib/$l" "$out/bundle/lib/"; done
stub=()
for l in $(for k in $keep; do objdump -p "$lib/$k" | awk '$1=="NEEDED"{print $2}'; done | sort -u); do
  case " $keep $glibc " in *" $l "*) ;; *) stub+=("$lib/$l");; esac
done
python3 "$(dirname "$0")/stub_libs.py" "$out/bundle/lib" "$out"/bundle/lib/* -- "${stub[@]}"
tar -C "$out" -cJf "$out/bundle.tar.xz" bundle
ls -la "$out/bundle.tar.xz"
