"""Reference timing for `fgclip bench train`: the same FG-CLIP step in PyTorch on CPU —
HF transformers CLIPModel (random weights of a preset's config.json), the dense path,
ROI Align (torchvision semantics, 1×1, aligned, adaptive; as an interpolation matrix),
both contrastive losses (and with `--hard-negatives H` FG-CLIP's hard-negative term over
H negatives per region, weight 0.5), backward, AdamW. Same synthetic batch: B clips × T
frames, 2 regions with boxes on every other frame, 20-token captions. `--device cuda` runs it on
a GPU (synchronised after each step); `--precision bf16` runs the forward under
`torch.autocast(dtype=torch.bfloat16)` with f32 weights and AdamW, as FG-CLIP trains.

    python bench/train_torch.py configs/vit-b-32.json --batch 4 --frames 8 --iters 5
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--frames", type=int, default=8)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--iters", type=int, default=5)
p.add_argument("--device", default="cpu", help="cpu or cuda")
p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
p.add_argument("--tf32", action="store_true",
               help="f32 matmuls in TF32 on a GPU (torch.backends.cuda.matmul.allow_tf32; PyTorch's default is exact f32)")
p.add_argument("--hard-negatives", type=int, default=0, help="negatives per boxed region, H")
p.add_argument("--trim-text", action="store_true",
               help="cut captions after their end-of-text (24 positions, as fgclip train does; "
                    "the same loss under the causal mask) instead of padding them to 77")
a = p.parse_args()
dev = torch.device(a.device)
torch.backends.cuda.matmul.allow_tf32 = a.tf32
torch.backends.cudnn.allow_tf32 = a.tf32
cfg = json.load(open(a.config))
cfg.pop("_comment", None)
model = CLIPModel(CLIPConfig(**cfg)).train().to(dev)
region_scale = torch.nn.Parameter(torch.tensor(2.6592, device=dev))
hard_scale = torch.nn.Parameter(torch.tensor(2.6592, device=dev))
opt = torch.optim.AdamW(list(model.parameters()) + [region_scale, hard_scale], lr=1e-5)
B, T, N = a.batch, a.frames, 4
S = model.config.vision_config.image_size
g = S // model.config.vision_config.patch_size


def caption(k):
    ids = [0] * (24 if a.trim_text else 77)
    ids[0] = 49406
    for t in range(1, 19):
        ids[t] = 320 + (k * 31 + t * 7) % 4000
    ids[19] = 49407
    return ids


pixels = torch.randn(B, T, 3, S, S, device=dev)
gids = torch.tensor([caption(b) for b in range(B)], device=dev)
rids = torch.tensor([[caption(b * N + i + 100) for i in range(N)] for b in range(B)], device=dev)
rois = []  # (b, i, t, box)
for b in range(B):
    for t in range(0, T, 2):
        for i in range(2):
            rois.append((b, i, t, [0.1 + 0.3 * i, 0.2, 0.5 + 0.3 * i, 0.9]))


def roi_weights(box):
    # torchvision roi_align, output 1x1, spatial_scale 1, sampling -1, aligned.
    x1, y1, x2, y2 = [v * g - 0.5 for v in box]
    rw, rh = x2 - x1, y2 - y1
    gh, gw = math.ceil(rh), math.ceil(rw)
    w = torch.zeros(g * g)
    cnt = max(gh * gw, 1)
    for iy in range(gh):
        y = y1 + (iy + 0.5) * rh / gh
        for ix in range(gw):
            x = x1 + (ix + 0.5) * rw / gw
            if y < -1 or y > g or x < -1 or x > g:
                continue
            y, x = max(y, 0.0), max(x, 0.0)
            yl, xl = int(y), int(x)
            if yl >= g - 1:
                yl = yh = g - 1
                y = float(yl)
            else:
                yh = yl + 1
            if xl >= g - 1:
                xl = xh = g - 1
                x = float(xl)
            else:
                xh = xl + 1
            ly, lx = y - yl, x - xl
            for (yy, xx, v) in [(yl, xl, (1 - ly) * (1 - lx)), (yl, xh, (1 - ly) * lx), (yh, xl, ly * (1 - lx)), (yh, xh, ly * lx)]:
                w[yy * g + xx] += v / cnt
    return w


W = torch.stack([roi_weights(r[3]) for r in rois]).to(dev)


def tensor(x):
    # transformers 5 returns an output object from get_*_features.
    return x if torch.is_tensor(x) else x.pooler_output


def clip_loss(x, y, s):
    logits = s * x @ y.t()
    lab = torch.arange(len(x), device=x.device)
    return (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2


def step():
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        loss = forward()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()


def forward():
    v = model.vision_model(pixel_values=pixels.flatten(0, 1), output_hidden_states=True)
    e = F.normalize(model.visual_projection(v.pooler_output), dim=-1).view(B, T, -1)
    video = F.normalize(e.mean(1), dim=-1)
    x = v.hidden_states[-2]
    last = model.vision_model.encoder.layers[-1]
    x = x + last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
    x = x + last.mlp(last.layer_norm2(x))
    dense = model.visual_projection(model.vision_model.post_layernorm(x[:, 1:]))  # (BT, g*g, P)
    idx = torch.tensor([b * T + t for b, i, t, _ in rois], device=dev)
    feats = F.normalize((W.unsqueeze(1) @ dense[idx]).squeeze(1), dim=-1)
    keys = sorted({(b, i) for b, i, _, _ in rois})
    reg = torch.stack([F.normalize(feats[[k for k, r in enumerate(rois) if (r[0], r[1]) == key]].mean(0), dim=-1) for key in keys])
    t_g = F.normalize(tensor(model.get_text_features(input_ids=gids, attention_mask=(gids != 0).long())), dim=-1)
    rsel = torch.stack([rids[b, i] for b, i in keys])
    t_r = F.normalize(tensor(model.get_text_features(input_ids=rsel, attention_mask=(rsel != 0).long())), dim=-1)
    loss = clip_loss(video, t_g, model.logit_scale.exp().clamp(max=100)) + 0.1 * clip_loss(reg, t_r, region_scale.exp().clamp(max=100))
    H = a.hard_negatives
    if H:
        # FG-CLIP's hard_contrastive_loss: CE over [positive, H negatives], target 0.
        hids = torch.tensor([caption(10000 + (b * N + i) * H + h) for b, i in keys for h in range(H)], device=dev)
        t_h = F.normalize(tensor(model.get_text_features(input_ids=hids, attention_mask=(hids != 0).long())), dim=-1)
        cand = torch.cat([t_r.unsqueeze(1), t_h.view(len(keys), H, -1)], 1)  # (K, 1+H, P)
        logits = hard_scale.exp() * torch.einsum("kp,khp->kh", reg, cand)
        loss = loss + 0.5 * F.cross_entropy(logits, torch.zeros(len(keys), dtype=torch.long, device=dev))
    return loss


t0 = time.perf_counter()
step()
first = time.perf_counter() - t0
for _ in range(a.warmup - 1):
    step()
ms = []
for _ in range(a.iters):
    t = time.perf_counter()
    step()
    ms.append((time.perf_counter() - t) * 1e3)
med = statistics.median(ms)
where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
print(f"torch {torch.__version__}, {where}, {a.precision}{' (TF32 matmuls)' if a.tf32 and a.precision == 'f32' else ''}, captions {'cut after end-of-text' if a.trim_text else 'padded'}: train step median {med:.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}), {B / med * 1e3:.2f} clips/s; first step {first:.1f} s")
