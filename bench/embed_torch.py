"""Reference timing for `fgclip bench embed`: HF transformers CLIPModel on CPU, the same
geometry (a preset's config.json), random weights, the same batch and captions of 20
tokens. Prints median ms per forward like the Rust benchmark. `--device cuda` times the
same on a GPU (synchronised after each forward); `--precision bf16` runs under
`torch.autocast(dtype=torch.bfloat16)`.

    python bench/embed_torch.py configs/vit-b-32.json --batch 16 --iters 10
"""
import argparse
import json
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--iters", type=int, default=10)
p.add_argument("--device", default="cpu", help="cpu or cuda")
p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
p.add_argument("--tf32", action="store_true",
               help="f32 matmuls in TF32 on a GPU (torch.backends.cuda.matmul.allow_tf32; PyTorch's default is exact f32)")
args = p.parse_args()
dev = torch.device(args.device)
torch.backends.cuda.matmul.allow_tf32 = args.tf32
torch.backends.cudnn.allow_tf32 = args.tf32

cfg = json.load(open(args.config))
cfg.pop("_comment", None)
model = CLIPModel(CLIPConfig(**cfg)).eval().to(dev)
v = model.config.vision_config
pixels = torch.randn(args.batch, 3, v.image_size, v.image_size)
ids = torch.zeros(args.batch, 77, dtype=torch.long)
for b in range(args.batch):
    ids[b, 0] = 49406
    for t in range(1, 19):
        ids[b, t] = 320 + (b * 31 + t * 7) % 4000
    ids[b, 19] = 49407
mask = (ids != 0).long()
pixels, ids, mask = pixels.to(dev), ids.to(dev), mask.to(dev)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def dense(pixels):
    out = model.vision_model(pixel_values=pixels, output_hidden_states=True)
    x = out.hidden_states[-2]
    last = model.vision_model.encoder.layers[-1]
    x = x + last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
    x = x + last.mlp(last.layer_norm2(x))
    return model.visual_projection(out.pooler_output), model.visual_projection(
        model.vision_model.post_layernorm(x[:, 1:])
    )


def timed(name, f):
    for _ in range(args.warmup):
        f()
    sync()
    ms = []
    for _ in range(args.iters):
        t = time.perf_counter()
        f()
        sync()
        ms.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(ms)
    print(f"{name:<28} median {med:9.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f})  {args.batch / med * 1e3:8.1f} items/s")


where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
print(f"torch {torch.__version__}, {where}, batch {args.batch}, {args.precision}{' (TF32 matmuls)' if args.tf32 and args.precision == 'f32' else ''}")
with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
    timed("image forward", lambda: model.get_image_features(pixel_values=pixels))
    timed("image forward + dense grid", lambda: dense(pixels))
    timed("text forward", lambda: model.get_text_features(input_ids=ids, attention_mask=mask))
