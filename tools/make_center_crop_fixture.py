"""Make tests/fixtures/center_crop/: real frames of several aspect ratios and what HF's
CLIPImageProcessor (transformers 4.57) makes of them (shortest edge to S with Pillow's
bicubic filter, centre crop S×S, rescale, CLIP normalisation), the reference for
`preprocess: center_crop` (crates/fgclip-vad/src/data/preprocess.rs).

    python tools/make_center_crop_fixture.py tests/fixtures/videos tests/fixtures/center_crop

Frames are decoded with OpenCV from the committed fixture videos; the portrait, square and
odd-sized cases are numpy slices of them (real pixels, other shapes). Writes
frames.safetensors (`frame_<case>`: uint8 (H, W, 3) RGB) and expected.safetensors
(`pixel_values_<case>`: float32 (3, S, S)) and cases.json (name, width, height, S).
"""
import json
import sys

import cv2
import numpy as np
from safetensors.numpy import save_file
from transformers import CLIPImageProcessor

videos, out = sys.argv[1], sys.argv[2]


def frame(path, index):
    cap = cv2.VideoCapture(path)
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    assert ok, (path, index)
    return np.ascontiguousarray(bgr[:, :, ::-1])


street = frame(f"{videos}/vtest.avi", 120)        # 768×576, 4:3
testsrc = frame(f"{videos}/testsrc_h264.mp4", 45)  # 320×240
cases = [
    ("street_16x9", street[72:504], 224),           # 768×432, downscaled
    ("testsrc_4x3", testsrc, 224),                  # 320×240
    ("testsrc_portrait", testsrc[:, 90:225], 96),   # 135×240
    ("testsrc_square", testsrc[:, 40:280], 64),     # 240×240
    ("testsrc_odd", testsrc[13:200, 7:262], 64),    # 255×187
    ("testsrc_tall_odd", testsrc[:233, 101:160], 32),  # 59×233, upscaled
]
frames, expected, meta = {}, {}, []
for name, img, s in cases:
    img = np.ascontiguousarray(img)
    proc = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
    pv = proc(images=img, return_tensors="np")["pixel_values"][0].astype(np.float32)
    frames[f"frame_{name}"] = img
    expected[f"pixel_values_{name}"] = pv
    meta.append({"name": name, "width": int(img.shape[1]), "height": int(img.shape[0]), "size": s})
save_file(frames, f"{out}/frames.safetensors")
save_file(expected, f"{out}/expected.safetensors")
with open(f"{out}/cases.json", "w") as f:
    json.dump(meta, f, indent=1)
print(json.dumps(meta))
