"""Golden data for FG-CLIP 2: tests/fixtures/fgclip2_tiny/.

Runs FG-CLIP 2's own code (360CVGroup/FG-CLIP, main branch, fgclip2/model/strcs: the modeling
file, its image processor and FG_CLIP2_Model) on a tiny random model, with a small tokenizer in
Gemma's format made here with the `tokenizers` library, and writes:
  model/                 the checkpoint as save_pretrained writes it (config.json with FG-CLIP 2's
                         model_type and sub-configs, model.safetensors), tokenizer.json,
                         tokenizer_config.json, preprocessor_config.json
  expected.safetensors   token ids; for each image case the processor's spatial shape and mask,
                         the vision tower's pooled output, the dense features (dense_feature_head)
                         of the image's own patches and ROI features of boxes; text embeddings of
                         the short, long and box walks
  expected.json          what each array is, the pixel values' SHA-256 (float32, little-endian,
                         padded to the budget) and the decoded frame's MD5

Usage (the versions FG-CLIP 2's code was written against: it imports check_model_inputs and
TransformersKwargs, which later transformers moved):
  pip install torch==2.15.0 torchvision transformers==4.57.6 tokenizers==0.22.2 \
      pillow numpy safetensors einops opencv-python-headless
  PYTHONPATH=<FG-CLIP checkout, main branch> python tools/make_fgclip2_fixture.py \
      tests/fixtures/fgclip2_tiny tests/fixtures/videos/testsrc_h264.mp4
Frames are decoded with OpenCV (fgclip's decoder equals it; the test checks the frame's MD5).
"""
import hashlib, json, os, sys

import cv2
import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, trainers
from transformers import AutoTokenizer

from fgclip2.model.strcs.configuration_fgclip2 import Fgclip2Config
from fgclip2.model.strcs.fgclip2 import FG_CLIP2_Model
from fgclip2.model.strcs.image_processing_fgclip2 import Fgclip2ImageProcessor

out, video = sys.argv[1], sys.argv[2]
model_dir = f"{out}/model"
os.makedirs(model_dir, exist_ok=True)

# --- A small tokenizer in Gemma's format: SentencePiece-style BPE over "▁"-joined text with
# byte fallback, <pad> 0, <eos> 1, <bos> 2, <unk> 3, the 256 byte tokens next.
corpus = [
    "a man attacks a woman inside a store", "a customer picks goods from the shelf",
    "two people fight near the door", "a car crashes into a pole at the crossing",
    "a fire grows in the corner of the street", "a person falls to the ground and lies still",
    "a thief runs away with a bag", "people walk along the street", "a red car drives past the shop",
    "the man pulls the woman's red bag", "another man steps forward and hits the woman",
    "a photo of a normal scene", "a photo of an explosion", "shoplifting in a supermarket",
    "一名男子在商店内对女性进行暴力攻击", "顾客在超市正常购物", "顾客在货架前挑选商品",
    "男子拉扯女性的红色物品", "另一名男子上前殴打女性", "女性倒地", "两个人在门口打架",
    "一辆汽车撞上了路口的电线杆", "街道角落里起火了", "小偷拿着包逃跑", "行人在街上正常行走",
    "一名男子倒在地上", "商店里发生了盗窃", "路上发生了交通事故",
] * 3
specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
bytes_ = [f"<0x{i:02X}>" for i in range(256)]
t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
t.normalizer = normalizers.Replace(" ", "▁")
t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=360, special_tokens=specials,
                                                  limit_alphabet=120, show_progress=False))
j = json.loads(t.to_str())
trained = [tok for tok, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
           if tok not in specials]
vocab = {tok: i for i, tok in enumerate(specials + bytes_ + trained)}
j["model"]["vocab"] = vocab
j["added_tokens"] = [dict(id=i, content=s, single_word=False, lstrip=False, rstrip=False,
                          normalized=False, special=True) for i, s in enumerate(specials)]
j["pre_tokenizer"] = None
j["post_processor"] = {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                {"Sequence": {"id": "A", "type_id": 0}},
                                {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}}
j["decoder"] = json.loads(decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                              decoders.Fuse()]).__getstate__())
with open(f"{model_dir}/tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(j, f, ensure_ascii=False)
# tokenizer_config.json asks for <eos> too: transformers rebuilds the template from these flags
# (GemmaTokenizerFast.update_post_processor), so the ids end "... <eos>" although tokenizer.json's
# template has <bos> alone. No padding_side: GemmaTokenizerFast's default (left) applies.
with open(f"{model_dir}/tokenizer_config.json", "w") as f:
    json.dump({"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": True,
               "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
               "model_max_length": 64}, f, indent=1)
tok = AutoTokenizer.from_pretrained(model_dir)
tok_right = AutoTokenizer.from_pretrained(model_dir, padding_side="right")

# --- The tiny random FG-CLIP 2 (every tensor random, so no mix-up of heads passes).
torch.manual_seed(7)
cfg = Fgclip2Config(
    text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=64, keep_len=20, longtext_len=196),
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_patches=16, patch_size=16))
m = FG_CLIP2_Model(cfg).eval()
with torch.no_grad():
    for name, p in m.named_parameters():
        if "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(0.15 * torch.randn_like(p))
    m.logit_scale.fill_(2.3)
    m.logit_bias.fill_(-1.7)
m.save_pretrained(model_dir, safe_serialization=True)
proc = Fgclip2ImageProcessor()
proc.save_pretrained(model_dir)

# --- Frames: testsrc_h264.mp4 frame 150 (320x240, H.264: fgclip decodes it bit-exactly as
# OpenCV does) and two crops of it: 16:9 and portrait 9:16.
cap = cv2.VideoCapture(video)
for _ in range(151):
    ok, bgr = cap.read()
    assert ok
rgb = np.ascontiguousarray(bgr[:, :, ::-1])
frames = {"4x3": rgb, "16x9": rgb[30:210], "portrait": rgb[:, 92:227]}
arrays, meta = {}, {"frame": {"video": "testsrc_h264.mp4", "index": 150,
                              "md5_rgb24": hashlib.md5(rgb.tobytes()).hexdigest(),
                              "crops": {"4x3": [0, 0, 320, 240], "16x9": [0, 30, 320, 210],
                                        "portrait": [92, 0, 227, 240]}},
                    "images": [], "texts": {}}
boxes = torch.tensor([[0.10, 0.35, 0.61, 0.92], [0.5, 0.1, 0.9, 0.45], [0.0, 0.0, 1.0, 1.0]])
with torch.no_grad():
    for crop, img in frames.items():
        for budget in ["dynamic", 1024]:
            kw = {} if budget == "dynamic" else dict(dynamic_max_patches=False, max_num_patches=budget)
            x = proc(images=img, return_tensors="pt", **kw)
            pv, mask, shapes = x["pixel_values"], x["pixel_attention_mask"], x["spatial_shapes"]
            h, w = shapes[0].tolist()
            name = f"{crop}_{budget}"
            pooled, dense = m.get_image_features(pv, mask, shapes, need_densefeature=True)
            denorm = boxes.clone()
            denorm[:, [0, 2]] *= w
            denorm[:, [1, 3]] *= h
            rois = m.get_image_box_roi_features(pv, mask, shapes, box_info=[[denorm]])
            arrays[f"{name}.spatial_shapes"] = shapes.numpy().astype(np.int64)
            arrays[f"{name}.pixel_attention_mask"] = mask.numpy().astype(np.int64)
            arrays[f"{name}.image_embeds"] = pooled.numpy()
            arrays[f"{name}.dense"] = dense[0, : h * w].numpy()
            arrays[f"{name}.roi"] = rois.numpy()
            meta["images"].append(dict(name=name, crop=crop, budget=budget,
                                       max_num_patches=int(pv.shape[1]), spatial_shape=[h, w],
                                       pixel_sha256=hashlib.sha256(
                                           pv[0].numpy().astype("<f4").tobytes()).hexdigest()))
    # One call with all three frames: the budget is the largest any frame asks for.
    x = proc(images=list(frames.values()), return_tensors="pt")
    arrays["batch.spatial_shapes"] = x["spatial_shapes"].numpy().astype(np.int64)
    meta["batch"] = dict(crops=list(frames), max_num_patches=int(x["pixel_values"].shape[1]),
                         pixel_sha256=[hashlib.sha256(p.numpy().astype("<f4").tobytes()).hexdigest()
                                       for p in x["pixel_values"]])
    meta["boxes"] = boxes.tolist()

    # --- Texts, lower-cased as FG-CLIP 2's scripts do; no attention mask (FG-CLIP 2 attends
    # padding and pools the last position).
    short = ["A photo of a man hitting a window", "顾客在超市正常购物", "Fire! 起火了",
             "两个人在门口打架 and a dog (𝔡𝔬𝔤) runs"]
    long = ["A man in a dark jacket walks up to the shop window at night, looks around, then swings a "
            "metal bar at the glass; the window breaks and he climbs inside while a car passes. " * 3,
            "一名男子在商店内对女性进行暴力攻击，另一名男子上前殴打女性，女性倒地，顾客们四散逃离。" * 4]
    box = ["the man pulls the woman's red bag", "女性倒地"]
    for walk, texts, n in [("short", short, 64), ("long", long, 196), ("box", box, 64)]:
        lowered = [s.lower() for s in texts]
        ids = torch.tensor(tok(lowered, max_length=n, padding="max_length", truncation=True).input_ids)
        ids_r = torch.tensor(tok_right(lowered, max_length=n, padding="max_length",
                                       truncation=True).input_ids)
        emb = m.get_text_features(input_ids=ids, walk_type=walk)
        emb_r = m.get_text_features(input_ids=ids_r, walk_type=walk)
        arrays[f"text.{walk}.input_ids"] = ids.numpy().astype(np.int64)
        arrays[f"text.{walk}.input_ids_right"] = ids_r.numpy().astype(np.int64)
        arrays[f"text.{walk}.embeds"] = emb.numpy()
        arrays[f"text.{walk}.embeds_right"] = emb_r.numpy()
        meta["texts"][walk] = dict(texts=texts, max_length=n)

save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, f"{out}/expected.safetensors")
meta["about"] = ("made by tools/make_fgclip2_fixture.py from FG-CLIP 2's own code; image_embeds is "
                 "the vision tower's pooled output (not normalised), dense the dense_feature_head "
                 "output of the image's h*w patches, roi FG_CLIP2_Model.get_image_box_roi_features "
                 "(normalised) for `boxes` x (w, h); text embeds get_text_features(walk_type) (not "
                 "normalised); input_ids padded left (the tokenizer's default) and input_ids_right")
meta["versions"] = dict(torch=torch.__version__, transformers=__import__("transformers").__version__,
                        tokenizers=__import__("tokenizers").__version__, opencv=cv2.__version__,
                        pillow=__import__("PIL").__version__, numpy=np.__version__)
with open(f"{out}/expected.json", "w", encoding="utf-8") as f:
    json.dump(meta, f, ensure_ascii=False, indent=1)
print("wrote", out, {k: v.shape for k, v in arrays.items()})
