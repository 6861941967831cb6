"""The Python peer of `fgclip bench detect` / `fgclip detect`: what a PyTorch user runs for
zero-shot video anomaly scores. OpenCV decodes the video (every frame, as
`cv2.VideoCapture.read` does), the centre frame of each snippet of `--stride` frames is
resized to the model's size (`cv2.INTER_CUBIC`) and CLIP-normalised, a transformers
`CLIPModel` (random weights of a preset's config.json, as the fgclip bench) embeds them in
batches, and each snippet's score is 1 − p(Normal) over the prompt set's classes (a class
embedding = the normalised mean of its templates' normalised embeddings, logits
100 · cosine). Prints the core time (decode + towers + scoring, after model load) and the
whole process's time.

    python bench/detect_peer.py configs/vit-b-32.json tests/fixtures/videos/vtest.avi
"""
import argparse
import json
import time

T0 = time.perf_counter()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPConfig, CLIPModel  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

p = argparse.ArgumentParser()
p.add_argument("config")
p.add_argument("video")
p.add_argument("--prompts", default="prompts/ucf-crime.json")
p.add_argument("--stride", type=int, default=16)
p.add_argument("--batch", type=int, default=32)
a = p.parse_args()

cfg = json.load(open(a.config))
cfg.pop("_comment", None)
torch.manual_seed(0)
model = CLIPModel(CLIPConfig(**cfg)).eval()
S = model.config.vision_config.image_size
L = model.config.text_config.max_position_embeddings


def caption_ids(k):
    # The fgclip bench's synthetic captions: 20 tokens, padded to 77 (no tokenizer files
    # are needed for random weights; the cost is the same as for real prompts).
    ids = [0] * L
    ids[0] = 49406
    for t in range(1, 19):
        ids[t] = 320 + (k * 31 + t * 7) % 4000
    ids[19] = 49407
    return ids


prompts = json.load(open(a.prompts))
classes = [prompts["normal"]] + prompts["classes"]
loaded = time.perf_counter()

with torch.no_grad():
    t_core = time.perf_counter()
    # Class embeddings from the templates.
    heads = []
    k = 0
    for c in classes:
        ids = torch.tensor([caption_ids(k + j) for j in range(len(c["templates"]))])
        k += len(c["templates"])
        e = model.get_text_features(input_ids=ids, attention_mask=(ids != 0).long())
        e = e if torch.is_tensor(e) else e.pooler_output
        e = torch.nn.functional.normalize(e, dim=-1).mean(0)
        heads.append(torch.nn.functional.normalize(e, dim=-1))
    heads = torch.stack(heads)

    cap = cv2.VideoCapture(a.video)
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    n = (frames + a.stride - 1) // a.stride
    centres = {min(s * a.stride + (min(a.stride, frames - s * a.stride)) // 2, frames - 1): s for s in range(n)}
    batch, scores, decode_s, model_s = [], [], 0.0, 0.0

    def flush():
        global model_s
        t = time.perf_counter()
        x = torch.from_numpy(np.stack(batch))
        e = model.get_image_features(pixel_values=x)
        e = e if torch.is_tensor(e) else e.pooler_output
        probs = (100 * torch.nn.functional.normalize(e, dim=-1) @ heads.T).softmax(-1)
        scores.extend((1 - probs[:, 0]).tolist())
        batch.clear()
        model_s += time.perf_counter() - t

    i = 0
    t = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i in centres:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            small = cv2.resize(rgb, (S, S), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
            batch.append(((small - MEAN) / STD).transpose(2, 0, 1).copy())
            if len(batch) == a.batch:
                decode_s += time.perf_counter() - t
                flush()
                t = time.perf_counter()
        i += 1
    decode_s += time.perf_counter() - t
    if batch:
        flush()
    core = time.perf_counter() - t_core

print(
    f"peer (OpenCV {cv2.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads): "
    f"{a.video}: {len(scores)} snippets (stride {a.stride}) in {core:.1f} s core "
    f"(decode {decode_s:.1f} s, model {model_s:.1f} s), {frames / core:.1f} frames/s; "
    f"model load {loaded - T0:.1f} s; whole process {time.perf_counter() - T0:.1f} s"
)
