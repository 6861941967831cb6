"""Golden optimizer runs for `fgclip check-steps` (tests/fixtures/optimizer/expected.json),
made with PyTorch the way FG-CLIP trains:

- the model: transformers' CLIPModel from tests/fixtures/clip_tiny in float64, with
  `logit_scale_region` as a parameter starting at the model's own `logit_scale`
  (DESIGN.md §7); the batch: tests/fixtures/fgclip_batch, the same every step;
- the loss of DESIGN.md §4 (video mean of normalised frame embeddings; FG-CLIP's dense
  path; torchvision's roi_align 1x1, aligned, adaptive; pairwise contrastive losses with
  exp(scale), no clamp in the forward), region weight 0.1; checked here against
  fgclip_batch/expected.json (float64 reference) before anything is written;
- weight-decay groups from transformers' own `get_parameter_names` with HF Trainer's
  patterns (no decay on LayerNorm modules and biases), optionally a separate learning rate
  for every `text_model.*` parameter;
- torch.optim.AdamW (betas 0.9/0.98, eps 1e-6, weight decay 0.2),
  torch.nn.utils.clip_grad_norm_(1.0), transformers' get_cosine_schedule_with_warmup
  (2 warm-up steps of 10: the first step's learning rate is 0), then open_clip's clamp of
  both logit scales to [0, ln 100] after each step.

Runs: `fgclip` (lr 1e-3), `text_lr` (the same, text tower at 3e-4), `high_scale` (the
model's logit_scale set to OpenAI's 4.6052, a hair above ln 100). For each of 3 steps:
the learning rates, the loss, the gradient norm before clipping, and a few parameters after
the step in HF layout. Also `schedules`: transformers' learning-rate tables for `lr_at`.

    python3 tools/make_optimizer_fixture.py      # torch, torchvision, transformers, safetensors
"""
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torchvision.ops import roi_align
from transformers import (
    CLIPModel,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
)
from transformers.trainer_pt_utils import get_parameter_names

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
WATCH = [
    "logit_scale",
    "logit_scale_region",
    "vision_model.encoder.layers.0.mlp.fc1.bias",
    "vision_model.pre_layrnorm.weight",
    "vision_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.encoder.layers.0.self_attn.q_proj.weight",
    "text_model.final_layer_norm.bias",
    "visual_projection.weight",
]
STEPS, TOTAL, WARMUP, LR, TEXT_LR, WD = 3, 10, 2, 1e-3, 3e-4, 0.2
torch.manual_seed(0)
batch = load_file(os.path.join(ROOT, "fgclip_batch", "batch.safetensors"))


def load_model(logit_scale=None):
    model = CLIPModel.from_pretrained(os.path.join(ROOT, "clip_tiny")).double().train()
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(logit_scale)
    # DESIGN.md §7: a plain CLIP checkpoint's region scale starts at its own logit_scale.
    model.logit_scale_region = torch.nn.Parameter(model.logit_scale.detach().clone())
    return model


def clip_loss(a, b, scale):
    logits = scale * a @ b.t()
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def text_embeds(model, ids):
    out = model.get_text_features(input_ids=ids, attention_mask=(ids != 0).long())
    out = out if torch.is_tensor(out) else out.pooler_output
    return F.normalize(out, dim=-1)


def fgclip_loss(model):
    px = batch["pixel_values"].double()
    B, T = px.shape[:2]
    v = model.vision_model(pixel_values=px.flatten(0, 1), output_hidden_states=True)
    e = F.normalize(model.visual_projection(v.pooler_output), dim=-1).view(B, T, -1)
    video = F.normalize(e.mean(1), dim=-1)
    # FG-CLIP's dense path: the last layer again with value-only attention.
    x = v.hidden_states[-2]
    last = model.vision_model.encoder.layers[-1]
    x = x + last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
    x = x + last.mlp(last.layer_norm2(x))
    dense = model.visual_projection(model.vision_model.post_layernorm(x[:, 1:]))
    g = int(round(dense.shape[1] ** 0.5))
    grid = dense.view(B * T, g, g, -1).permute(0, 3, 1, 2)
    boxes, mask = batch["boxes"].double(), batch["bbox_mask"]
    N = mask.shape[2]
    regions, keys = [], []
    for b in range(B):
        for i in range(N):
            frames = [t for t in range(T) if mask[b, t, i]]
            if not frames:
                continue
            rois = torch.stack([torch.cat([torch.tensor([float(b * T + t)], dtype=torch.float64), boxes[b, t, i] * g]) for t in frames])
            feats = roi_align(grid, rois, output_size=1, spatial_scale=1.0, sampling_ratio=-1, aligned=True).flatten(1)
            regions.append(F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1))
            keys.append((b, i))
    t_g = text_embeds(model, batch["global_input_ids"])
    loss_g = clip_loss(video, t_g, model.logit_scale.exp())
    if regions:
        ids = torch.stack([batch["region_input_ids"][b, i] for b, i in keys])
        loss_r = clip_loss(torch.stack(regions), text_embeds(model, ids), model.logit_scale_region.exp())
    else:
        loss_r = torch.zeros((), dtype=torch.float64)
    return loss_g + 0.1 * loss_r, loss_g, loss_r


def hf_groups(model, text_lr):
    # HF Trainer.get_decay_parameter_names, as FG-CLIP's trainer uses it.
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]))
    groups = {}
    for name, p in model.named_parameters():
        text = text_lr is not None and name.startswith("text_model.")
        key = (name in decay, text)
        groups.setdefault(key, []).append(p)
    return [
        {"params": ps, "weight_decay": WD if d else 0.0, "lr": text_lr if t else LR}
        for (d, t), ps in sorted(groups.items())
    ], sorted(n for n, _ in model.named_parameters() if n not in decay)


def run(text_lr=None, logit_scale=None):
    model = load_model(logit_scale)
    groups, no_decay = hf_groups(model, text_lr)
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.98), eps=1e-6, weight_decay=WD)
    sched = get_cosine_schedule_with_warmup(opt, WARMUP, TOTAL)
    params = dict(model.named_parameters())
    steps = []
    for step in range(STEPS):
        # LambdaLR scales every group's initial rate by the same factor.
        factor = opt.param_groups[0]["lr"] / opt.param_groups[0]["initial_lr"]
        lr, text = LR * factor, (None if text_lr is None else text_lr * factor)
        loss, lg, lr_ = fgclip_loss(model)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
            model.logit_scale_region.clamp_(0, math.log(100))
        steps.append({
            "step": step,
            "lr": lr,
            "text_lr": text,
            "loss": loss.item(),
            "loss_global": lg.item(),
            "loss_region": lr_.item(),
            "grad_norm": norm.item(),
            # The first 64 values of each (HF layout, row-major).
            "params": {n: params[n].detach().reshape(-1)[:64].tolist() for n in WATCH},
            "shapes": {n: list(params[n].shape) for n in WATCH},
        })
    return {"text_model_lr": text_lr, "logit_scale": logit_scale, "no_decay": no_decay, "steps": steps}


def schedule_table(make, total=10, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make(opt, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# The loss implementation first: it must reproduce the float64 reference batch.
want = json.load(open(os.path.join(ROOT, "fgclip_batch", "expected.json")))
loss, lg, lr_ = fgclip_loss(load_model())
assert abs(loss.item() - want["loss"]) < 1e-9, (loss.item(), want["loss"])
assert abs(lg.item() - want["loss_global"]) < 1e-9 and abs(lr_.item() - want["loss_region"]) < 1e-9

out = {
    "about": __doc__.strip().splitlines()[0] + " See tools/make_optimizer_fixture.py.",
    "config": {
        "learning_rate": LR, "weight_decay": WD, "adam_beta1": 0.9, "adam_beta2": 0.98,
        "adam_epsilon": 1e-6, "warmup_steps": WARMUP, "max_steps": TOTAL, "schedule": "cosine",
        "grad_clip_norm": 1.0, "region_weight": 0.1, "logit_scale_max": math.log(100),
    },
    "steps": STEPS,
    "runs": {
        "fgclip": run(),
        "text_lr": run(text_lr=TEXT_LR),
        "high_scale": run(logit_scale=4.6052),
    },
    # Base learning rate 2.0, 10 steps: the rate used at each step.
    "schedules": {
        "constant_warmup3": schedule_table(get_constant_schedule_with_warmup, num_warmup_steps=3),
        "cosine_warmup2": schedule_table(get_cosine_schedule_with_warmup, num_warmup_steps=2, num_training_steps=10),
        "cosine_warmup0": schedule_table(get_cosine_schedule_with_warmup, num_warmup_steps=0, num_training_steps=10),
        "cosine_warmup2_min0.1": schedule_table(get_cosine_with_min_lr_schedule_with_warmup, num_warmup_steps=2, num_training_steps=10, min_lr_rate=0.1),
    },
    "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
}
path = os.path.join(ROOT, "optimizer", "expected.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(path, {k: [s["loss"] for s in r["steps"]] for k, r in out["runs"].items()})
