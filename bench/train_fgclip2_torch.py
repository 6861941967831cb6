"""Reference timing for `fgclip bench train --preset fgclip2-…`: one optimizer step of FG-CLIP 2's
own `FG_CLIP2_Model.forward` (360CVGroup/FG-CLIP, main branch; the casts that drop its region and
hard-negative terms patched, tools/fgclip2_patched.py, so both sides compute every term), its
backward and torch's AdamW, on CPU, with random weights of the preset's config. The batch of
`fgclip bench train --frames 1`: B images of P patches (a square grid), 4 box slots an image with
2 boxes, each with H = 10 negatives; a 64-token short and a 196-token long caption an image.

    PYTHONPATH=<FG-CLIP checkout, main branch> python bench/train_fgclip2_torch.py \
        configs/fgclip2-base.json --batch 8 --patches 256 --iters 3
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from fgclip2_patched import patched_model_class  # noqa: E402
from fgclip2.model.strcs.configuration_fgclip2 import Fgclip2Config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--patches", type=int, default=256)
p.add_argument("--hard-negatives", type=int, default=10)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--iters", type=int, default=3)
a = p.parse_args()
assert a.hard_negatives == 10, "FG-CLIP 2's hard term takes exactly 10 negatives a box"
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("gloo", rank=0, world_size=1)
cfg = json.load(open(a.config))
for k in ["_comment", "model_type", "architectures"]:
    cfg.pop(k, None)
torch.manual_seed(0)
Model = patched_model_class()
m = Model(Fgclip2Config(**cfg)).train()
m.logit_scale_finegraind = torch.nn.Parameter(torch.ones([]) * 4.6052)
m.logit_scale_hardneg = torch.nn.Parameter(torch.ones([]) * 4.6052)
m.world_size, m.loss_type, m.thresholds = 1, "gather", 0.5
opt = torch.optim.AdamW(m.parameters(), lr=1e-5)
B, P, N, H = a.batch, a.patches, 4, a.hard_negatives
side = int(math.isqrt(P))
assert side * side == P
vc, tc = m.config.vision_config, m.config.text_config
dim = vc.num_channels * vc.patch_size ** 2


def caption(k, length):
    ids = [0] * length
    for i in range(length):
        back = length - 1 - i
        if back == 0:
            ids[i] = 1
        elif back <= 18:
            ids[i] = 4 + (k * 31 + i * 7) % (tc.vocab_size - 4)
        elif back == 19:
            ids[i] = 2
    return ids


def ids(rows, base, length):
    return torch.tensor([caption(k + base, length) for k in range(rows)])


boxes = torch.zeros(B, N, 4)
for b in range(B):
    for i in range(2):
        boxes[b, i] = torch.tensor([0.1 + 0.3 * i, 0.2, 0.5 + 0.3 * i, 0.9])
hard_texts = []
for b in range(B):
    for i in range(2):
        hard_texts.append(torch.cat([ids(1, 100 + b * N + i, 64),
                                     ids(H, 10_000 + (b * N + i) * H, 64)]))
batch = dict(
    text_short=ids(B, 0, 64), text_long=ids(B, 50, tc.longtext_len),
    pixel_values=torch.randn(B, P, dim), pixel_attention_mask=torch.ones(B, P, dtype=torch.long),
    spatial_shapes=torch.tensor([[side, side]] * B),
    box_infos=boxes.reshape(B * N, 4), box_texts=ids(B * N, 100, 64), box_nums=torch.tensor([2] * B),
    hard_infos=boxes.reshape(B * N, 4), hard_texts=torch.cat(hard_texts),
    hard_nums=torch.tensor([2] * B), add_box_loss=True, use_hard_neg=True)
times = []
for it in range(a.warmup + a.iters):
    t0 = time.perf_counter()
    loss = m(**batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
timed = times[a.warmup:]
print(json.dumps({"batch": B, "patches": P, "threads": torch.get_num_threads(),
                  "median_ms": statistics.median(timed) * 1e3, "min_ms": min(timed) * 1e3,
                  "max_ms": max(timed) * 1e3, "torch": torch.__version__}))
dist.destroy_process_group()
