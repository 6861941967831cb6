"""Golden data for FG-CLIP 2's training loss: tests/fixtures/fgclip2_tiny/loss.{safetensors,json}.

Runs `FG_CLIP2_Model.forward` of FG-CLIP 2's own code (360CVGroup/FG-CLIP, main branch,
fgclip2/model/strcs/fgclip2.py) on the tiny model of tests/fixtures/fgclip2_tiny/model, in float64,
on a batch where every term is really computed: 4 images of different patch grids, long captions,
12 valid regions (the reference's `topk(10)` needs 11), 7 of them with 10 hard negatives each. It
records the total loss, every term (by wrapping the loss methods, so the values are the ones the
forward used), the cmr threshold after the forward (which starts from 0.5, as a resumed run's
would), the same after a second forward that starts from the clamped update, and the gradients of some parameters after the first forward's backward.

What is patched, and why (the changes are applied to the source text at import, each asserted):
  - `x_rois.type(torch.bfloat16)` (twice) is removed: in float32 or float64 it makes the ROI
    features bfloat16 and the matmul with the text embeddings fails, which the `try/except: pass`
    around the region and hard-negative terms turns into dropping both terms silently;
  - `roi_align(real_feature_map.type(torch.float32), ...)` and `_denormalize_boxes` keep the
    feature map's and the boxes' dtype (float64 here; the boxes are multiples of 1/64, so their
    grid coordinates are exact in float32 too);
  - `except: pass` becomes `except: raise`, so that an error is an error.
`torch.distributed` runs as a one-process `gloo` group (the forward calls all_gather and
all_reduce); `loss_type` is "gather", `world_size` 1. The two scales FG-CLIP 2's training script
adds (`logit_scale_finegraind`, `logit_scale_hardneg`, 4.6052 there) are set to 2.5 and 3.0 here so
that a mix-up of the two shows.

Pixels are not a picture: `pixel_values[b, r, c] = ((b*7919 + r*1031 + c*97 + (r*c) % 13) % 64)/32 - 1`
for the image's own h*w patch rows r and the 768 columns c, 0 on padding rows (exact in binary,
so the test recomputes them). Token ids come from the committed small tokenizer (lower-cased, padded
to 64 / 196 as the training script does).

Usage (the reference stack of tools/make_fgclip2_fixture.py):
  PYTHONPATH=<FG-CLIP checkout, main branch> python tools/make_fgclip2_loss_fixture.py \
      tests/fixtures/fgclip2_tiny
"""
import json, os, sys

import numpy as np
import torch
import torch.distributed as dist
from safetensors.numpy import save_file
from transformers import AutoTokenizer

out = sys.argv[1]
model_dir = f"{out}/model"

# --- FG_CLIP2_Model with the casts patched (see above and tools/fgclip2_patched.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fgclip2_patched import patched_model_class  # noqa: E402
Model = patched_model_class()

# --- Record every term as the forward computes it.
record = {}
def wrap(name):
    f = getattr(Model, name)
    def g(self, *a, **k):
        r = f(self, *a, **k)
        record.setdefault(name, []).append(r)
        return r
    setattr(Model, name, g)
for name in ["all_gather_siglip_loss_", "pairwise_contrastive_loss", "hard_category_contrastive_loss",
             "hard_contrastive_total_loss", "hard_contrastive_loss", "get_cmr_loss"]:
    wrap(name)

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29531")
dist.init_process_group("gloo", rank=0, world_size=1)

torch.manual_seed(0)
m = Model.from_pretrained(model_dir).double().train()
SCALE_REGION, SCALE_HARD = 2.5, 3.0
m.logit_scale_finegraind = torch.nn.Parameter(torch.ones([], dtype=torch.float64) * SCALE_REGION)
m.logit_scale_hardneg = torch.nn.Parameter(torch.ones([], dtype=torch.float64) * SCALE_HARD)
m.world_size = 1
m.loss_type = "gather"
tok = AutoTokenizer.from_pretrained(model_dir)
ids = lambda texts, n: torch.tensor(tok([t.lower() for t in texts], max_length=n, padding="max_length",
                                        truncation=True).input_ids)

# --- The batch.
arrays, meta = {}, {}
shapes = [(4, 6), (6, 4), (5, 5), (4, 8)]
B, P, C, N, H = len(shapes), 32, 768, 4, 10
pv = np.zeros((B, P, C))
mask = np.zeros((B, P), dtype=np.int64)
for b, (h, w) in enumerate(shapes):
    r = np.arange(h * w)[:, None]
    c = np.arange(C)[None, :]
    pv[b, : h * w] = ((b * 7919 + r * 1031 + c * 97 + (r * c) % 13) % 64) / 32.0 - 1.0
    mask[b, : h * w] = 1
short = ["A man attacks a woman inside a store", "顾客在超市正常购物", "a fire grows in the corner of the street",
         "两个人在门口打架"]
long = ["A man in a dark jacket walks into the store, pulls the woman's red bag and hits her; another "
        "man steps forward while customers run away. " * 2,
        "顾客在货架前挑选商品，收银员在柜台后面工作，门口有一辆红色的汽车经过，一切正常。" * 3,
        "A fire grows in the corner of the street at night; smoke rises and people walk away from it.",
        "两个人在门口打架，一名男子倒在地上，另一名男子拿着包逃跑，行人在街上停下来看。" * 2]
box_nums = [3, 3, 4, 2]
region_texts = [
    ["the man pulls the woman's red bag", "女性倒地", "a customer picks goods from the shelf", ""],
    ["顾客在货架前挑选商品", "a red car drives past the shop", "收银员", ""],
    ["a fire grows in the corner", "smoke rises", "女性倒地", "people walk along the street"],
    ["男子拉扯女性的红色物品", "另一名男子上前殴打女性", "", ""],
]  # "女性倒地" twice: identical texts, similarity 1 > 0.95, zeroed by the intra-text loss
hard_slots = {0: [0, 2], 1: [1], 2: [0, 1, 3], 3: [0]}
def negatives(text):
    swaps = ["red", "blue", "green", "black", "white", "yellow", "old", "young", "tall", "small"]
    return [f"{text} {s}" if i % 2 else f"{s} {text}" for i, s in enumerate(swaps)]
rng = np.random.default_rng(3)
boxes = np.zeros((B, N, 4))
for b in range(B):
    for i in range(N):
        x1, y1 = rng.integers(0, 40, 2) / 64
        x2, y2 = x1 + rng.integers(10, 24) / 64, y1 + rng.integers(10, 24) / 64
        boxes[b, i] = [x1, y1, x2, y2]
hard_ids = torch.zeros((B, N, H, 64), dtype=torch.long)
hard_mask = np.zeros((B, N, H), dtype=np.int64)
hard_infos = torch.zeros((B, N, 4), dtype=torch.float64)
hard_texts, hard_nums = [], []
for b in range(B):
    for j, i in enumerate(hard_slots[b]):
        cur = [region_texts[b][i]] + negatives(region_texts[b][i])
        t = ids(cur, 64)
        hard_texts.append(t)
        hard_ids[b, i] = t[1:]
        hard_mask[b, i] = 1
        hard_infos[b, j] = torch.from_numpy(boxes[b, i])
    hard_nums.append(len(hard_slots[b]))

batch = dict(
    text_short=ids(short, 64), text_long=ids(long, 196),
    pixel_values=torch.from_numpy(pv), pixel_attention_mask=torch.from_numpy(mask),
    spatial_shapes=torch.tensor(shapes, dtype=torch.long),
    box_infos=torch.from_numpy(boxes.reshape(B * N, 4)),
    box_texts=ids([t for row in region_texts for t in row], 64), box_nums=torch.tensor(box_nums),
    hard_infos=hard_infos.reshape(B * N, 4), hard_texts=torch.cat(hard_texts), hard_nums=torch.tensor(hard_nums),
    add_box_loss=True, use_hard_neg=True)

# --- The random tiny model's box-walk embeddings all lie within 0.95 of each other, which would
# zero every value of the intra-text term: boxtext_head is replaced by a centring (identity, bias
# minus the mean of this batch's box-walk outputs), rounded to float32 and stored as model.*.
with torch.no_grad():
    box_ids = torch.cat([batch["box_texts"], batch["hard_texts"]])
    mean = m.text_model(input_ids=box_ids, walk_type="box")[1].mean(0)
    d = mean.shape[0]
    m.boxtext_head.weight.copy_(torch.eye(d, dtype=torch.float64))
    m.boxtext_head.bias.copy_((-mean).float().double())
arrays["model.boxtext_head.weight"] = m.boxtext_head.weight.detach().numpy().astype(np.float32)
arrays["model.boxtext_head.bias"] = m.boxtext_head.bias.detach().numpy().astype(np.float32)

# --- Two forwards: the second starts from the threshold the first left.
def terms(step):
    long_, short_ = record["all_gather_siglip_loss_"][-2:]
    hard, thr = record["hard_contrastive_total_loss"][-1]
    cmr, _ = record["get_cmr_loss"][-1]
    return dict(loss_global=short_.item(), loss_global_long=long_.item(),
                loss_region=record["pairwise_contrastive_loss"][-1].item(),
                loss_region_text=record["hard_category_contrastive_loss"][-1].item(),
                loss_hard_negative=hard.item(), hard_pair=record["hard_contrastive_loss"][-1].item(),
                hard_cmr=cmr.item(), threshold_computed=float(thr.detach()), threshold_after=m.thresholds)

m.thresholds = 0.5  # as a resumed run's: step 1 uses it, step 2 the clamped update
loss = m(**batch).loss
loss.backward()
meta["step1"] = dict(loss=loss.item(), threshold_before=0.5, **terms(1))
grad_names = ["logit_scale", "logit_bias", "logit_scale_finegraind", "logit_scale_hardneg",
              "text_model.head.weight", "longtext_head.weight", "boxtext_head.weight",
              "dense_feature_head.attention.in_proj_weight", "dense_feature_head.mlp.fc2.weight", "vision_model.head.probe",
              "vision_model.embeddings.patch_embedding.weight",
              "vision_model.encoder.layers.0.self_attn.q_proj.weight",
              "text_model.encoder.layers.1.mlp.fc1.weight"]
params = dict(m.named_parameters())
for name in grad_names:
    arrays[f"grad.{name}"] = params[name].grad.detach().numpy().astype(np.float32).reshape(params[name].shape)
thr1 = m.thresholds
with torch.no_grad():
    loss2 = m(**batch).loss
meta["step2"] = dict(loss=loss2.item(), threshold_before=thr1, **terms(2))

arrays.update({
    "batch.short_ids": batch["text_short"].numpy(), "batch.long_ids": batch["text_long"].numpy(),
    "batch.region_ids": batch["box_texts"].numpy().reshape(B, N, 64),
    "batch.boxes": boxes.astype(np.float32), "batch.box_nums": np.array(box_nums, dtype=np.int64),
    "batch.hard_ids": hard_ids.numpy(), "batch.hard_mask": hard_mask,
    "batch.spatial_shapes": np.array(shapes, dtype=np.int64),
})
save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, f"{out}/loss.safetensors")
meta.update(
    about=("made by tools/make_fgclip2_loss_fixture.py: FG_CLIP2_Model.forward (casts patched, see the "
           "script) in float64 on the tiny model; step1 also has the gradients (grad.*, float32) of "
           "its backward; step2 is a second forward from step1's threshold, weights unchanged"),
    scales=dict(logit_scale_finegraind=SCALE_REGION, logit_scale_hardneg=SCALE_HARD),
    max_num_patches=P, grad_names=grad_names,
    versions=dict(torch=torch.__version__, transformers=__import__("transformers").__version__))
with open(f"{out}/loss.json", "w", encoding="utf-8") as f:
    json.dump(meta, f, ensure_ascii=False, indent=1)
print(json.dumps(meta, ensure_ascii=False, indent=1))
dist.destroy_process_group()
