"""Reference timing for `fgclip bench embed --preset fgclip2-*`: FG-CLIP 2's own model code
(360CVGroup/FG-CLIP, main branch, fgclip2/model/strcs) on CPU, the same geometry (a preset's
config.json), random weights, pixel values of full square grids at each patch budget (no
padding), and 64-token captions for the short walk. Prints median ms per forward like the
Rust benchmark.

    PYTHONPATH=<FG-CLIP checkout> python bench/embed_fgclip2_torch.py configs/fgclip2-base.json \
        --batch 1 --patches 256,1024 --iters 5
"""
import argparse
import json
import statistics
import time

import torch

from fgclip2.model.strcs.configuration_fgclip2 import Fgclip2Config
from fgclip2.model.strcs.fgclip2 import FG_CLIP2_Model

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--batch", type=int, default=1)
p.add_argument("--patches", default="256,1024")
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--attn", default="sdpa", help="transformers attention implementation")
args = p.parse_args()

cfg = json.load(open(args.config))
for k in ["_comment", "model_type", "architectures"]:
    cfg.pop(k, None)
config = Fgclip2Config(**cfg)
config._attn_implementation = args.attn
config.text_config._attn_implementation = args.attn
config.vision_config._attn_implementation = args.attn
model = FG_CLIP2_Model(config).eval()
dim = 3 * config.vision_config.patch_size ** 2


def timed(name, f):
    with torch.no_grad():
        for _ in range(args.warmup):
            f()
        ms = []
        for _ in range(args.iters):
            t = time.perf_counter()
            f()
            ms.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"name": name, "batch": args.batch, "median_ms": statistics.median(ms),
                      "min_ms": min(ms), "max_ms": max(ms)}), flush=True)


for n in [int(x) for x in args.patches.split(",")]:
    side = int(n ** 0.5)
    pv = torch.randn(args.batch, n, dim)
    mask = torch.ones(args.batch, n, dtype=torch.long)
    shapes = torch.tensor([[side, side]] * args.batch)
    timed(f"image forward, {n} patches", lambda: model.get_image_features(pv, mask, shapes))
    timed(f"image + dense, {n} patches",
          lambda: model.get_image_features(pv, mask, shapes, need_densefeature=True))
vocab = config.text_config.vocab_size
ids = torch.tensor([[2 + (b * 31 + t * 7) % (vocab - 2) for t in range(64)] for b in range(args.batch)])
timed("text forward (short)", lambda: model.get_text_features(ids, walk_type="short"))
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}))
