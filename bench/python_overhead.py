"""The Python binding's overhead: `Model.embed_images` on a batch through Python (numpy in,
numpy out) against the same Rust code timed inside Rust on the same model, batch and run.

    python bench/python_overhead.py MODEL_DIR [--batch 16] [--iters 20]

MODEL_DIR: a CLIP-shaped model folder (e.g. a run's final/). Prints both medians and their
ratio; the calls alternate, so both see the same machine state.
"""
import argparse
import statistics
import time

import numpy as np

import fgclip

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--iters", type=int, default=20)
a = ap.parse_args()

model = fgclip.load(a.model)
s = model.config["vision_config"]["image_size"]
pixels = np.random.default_rng(0).standard_normal((a.batch, 3, s, s), dtype=np.float32)
for _ in range(2):
    model.embed_images(pixels, batch_size=a.batch)
    model._time_embed_images_in_rust(pixels, 1, a.batch)
py, rust = [], []
for _ in range(a.iters):
    t = time.perf_counter()
    out = model.embed_images(pixels, batch_size=a.batch)
    py.append(time.perf_counter() - t)
    rust += model._time_embed_images_in_rust(pixels, 1, a.batch)
assert out.shape == (a.batch, model.embed_dim)
mp, mr = statistics.median(py), statistics.median(rust)
print(f"{model!r}, batch {a.batch} × {s}px, {a.iters} iters: through Python {mp * 1e3:.1f} ms, "
      f"in Rust {mr * 1e3:.1f} ms (medians): {mp / mr:.3f}×")
