"""Seed inputs for the fuzz targets (fuzz/seeds/<target>/), from the project's
fixtures and formats. Run from the repository root; `../shared/fixtures/annotations/`
(the VAGTA excerpts) is used where present. Plain Python 3, numpy for .npy.

    python3 fuzz/make_seeds.py
"""
import io
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "fixtures", "annotations")


def put(target, name, data):
    d = os.path.join(ROOT, "fuzz", "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Annotations: DESIGN.md's layouts, JSON Lines, VAGTA's variants.
clip = {
    "video": "Abuse/Abuse001_x264.mp4",
    "global_caption": "a man attacks a woman in a shop",
    "global_caption_long": "a man in a dark coat attacks a woman near the counter of a small shop",
    "region_captions": ["the man", "the woman"],
    "box_infos": [
        [{"frame": 10, "bbox": [0.1, 0.2, 0.4, 0.9]}, {"frame": 40, "bbox": [0.2, 0.2, 0.5, 0.9]}],
        [{"frame": 10, "bbox": [0.5, 0.1, 0.8, 0.95]}],
    ],
    "timestamps": [1.5, 6.25],
}
normal = {"video": "Normal/Normal_001.mp4", "global_caption": "an empty street", "timestamps": None}
put("annotations", "array", json.dumps([clip, normal]))
put("annotations", "jsonl", json.dumps(clip) + "\n" + json.dumps(normal) + "\n")
vagta = dict(clip)
vagta["box_infos"] = [[{"frame": 145, "bbox": [0.0078, 0.34, 0.29, 0.78], "enabled": True, "_track_id": None},
                       {"frame": 238, "bbox": [0.0078, 0.34, 0.29, 0.83], "enabled": False, "_track_id": 3}], [[]]]
put("annotations", "vagta-variants", json.dumps([vagta]))
if os.path.isdir(SHARED):
    with open(os.path.join(SHARED, "vagta_test.json")) as f:
        put("annotations", "vagta-excerpt", json.dumps(json.load(f)[:3]))
    with open(os.path.join(SHARED, "vagta_hard_negatives_train.json")) as f:
        h = json.load(f)
    h["items"] = h["items"][:3]
    put("hard_negatives", "vagta-excerpt", json.dumps(h))
put("hard_negatives", "minimal", json.dumps({"items": [{
    "video": "Abuse/Abuse001_x264.mp4", "region_index": 0, "timestamps": [1.5, 6.25],
    "region_caption": "the man", "hard_negative": ["the woman", "a dog"]}]}))

# Ground truth: UCF-Crime's temporal annotation file and XD-Violence's.
put("ground_truth", "ucf", "Arson011_x264.mp4  Arson  150  420  680  1267\n"
    "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
put("ground_truth", "xd", "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A 0 100\n"
    "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 12 80 120 160\n")

# safetensors: a small file in each dtype family, and the fusion fixture's header.
def safetensors(tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


put("safetensors", "mixed", safetensors({
    "w.weight": ("F32", [2, 3], np.arange(6, dtype="<f4").tobytes()),
    "h.weight": ("F16", [2], np.array([1.5, -2], dtype="<f2").tobytes()),
    "ids": ("I64", [3], np.array([1, 2, 3], dtype="<i8").tobytes()),
    "mask": ("U8", [2], bytes([0, 1])),
    "logit_scale": ("F32", [], np.array([2.6], dtype="<f4").tobytes()),
}))
put("safetensors", "bf16", safetensors({"b": ("BF16", [2], bytes([0x80, 0x3f, 0x00, 0x40]))}))

# .npy: versions 1 and 2, f4/f8/u1.
for name, arr in [("f4", np.arange(6, dtype="<f4").reshape(2, 3)),
                  ("f8", np.linspace(0, 1, 5)),
                  ("u1", np.arange(12, dtype="u1").reshape(2, 2, 3))]:
    b = io.BytesIO()
    np.save(b, arr)
    put("npy", name, b.getvalue())
b = io.BytesIO()
np.lib.format.write_array(b, np.zeros(3, dtype="<f4"), version=(2, 0))
put("npy", "v2", b.getvalue())

# Prompt sets and configs: the repository's own.
for f in ["ucf-crime.json", "xd-violence.json"]:
    with open(os.path.join(ROOT, "prompts", f), "rb") as src:
        put("prompts", f, src.read())
for f in ["tiny.json", "vit-b-32.json"]:
    with open(os.path.join(ROOT, "configs", f), "rb") as src:
        put("clip_config", f, src.read())
with open(os.path.join(ROOT, "tests", "fixtures", "fgclip_v1_tiny", "model", "config.json"), "rb") as src:
    put("clip_config", "fgclip-v1.json", src.read())
put("train_config", "demo", json.dumps({
    "batch_size": 16, "frames": 4, "learning_rate": 5e-4, "max_steps": 300,
    "augment": [{"crop": {"scale": [0.6, 1.0]}}, {"flip": 0.5}, {"jitter": {"brightness": 0.3}}],
    "fusion": "transformer", "freeze": ["text"], "segments": "whole_video"}))
put("train_config", "empty", "{}")
print("seeds written under fuzz/seeds/")
