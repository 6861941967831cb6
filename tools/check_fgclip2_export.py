"""Round trip of an fgclip FG-CLIP 2 export through FG-CLIP 2's own code (#26, item 8).

Loads `DIR` (a run's `final/`, trained from an FG-CLIP 2 model) with FG-CLIP 2's
`FG_CLIP2_Model.from_pretrained` and checks: every tensor of its state dict is in the file
under the same name and shape with the same values; the file has nothing else but the two
scales FG-CLIP 2's training script adds (`logit_scale_finegraind`, `logit_scale_hardneg`);
the keys are those of the model it was trained from (`FROM`); the tokenizer and image
processor load; and, when `EMB` (`fgclip embed --model DIR --texts TEXTS --out EMB`) is given,
FG-CLIP 2's short-walk text embeddings of `TEXTS` equal fgclip's within 1e-5.

Usage:
  PYTHONPATH=<FG-CLIP checkout, main branch> python tools/check_fgclip2_export.py DIR FROM [TEXTS EMB]
"""
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer

from fgclip2.model.strcs.fgclip2 import FG_CLIP2_Model
from fgclip2.model.strcs.image_processing_fgclip2 import Fgclip2ImageProcessor

d, src = sys.argv[1], sys.argv[2]
m = FG_CLIP2_Model.from_pretrained(d).eval()
sd = m.state_dict()
f = load_file(f"{d}/model.safetensors")
orig = load_file(f"{src}/model.safetensors")
added = {"logit_scale_finegraind", "logit_scale_hardneg"}
assert set(f) - set(sd) == added, set(f) - set(sd)
assert set(sd) <= set(f), set(sd) - set(f)
assert set(f) - added == set(orig), (set(f) ^ set(orig)) - added
for k, v in sd.items():
    assert tuple(v.shape) == f[k].shape, (k, v.shape, f[k].shape)
    assert np.array_equal(v.numpy(), f[k]), k
changed = sum(not np.array_equal(f[k], orig[k]) for k in orig)
print(f"{len(sd)} tensors load with their values; {changed} differ from {src} (trained); "
      f"scales {float(f['logit_scale_finegraind']):.4f} {float(f['logit_scale_hardneg']):.4f}")
tok = AutoTokenizer.from_pretrained(d)
Fgclip2ImageProcessor.from_pretrained(d)
if len(sys.argv) > 4:
    texts = [t for t in open(sys.argv[3], encoding="utf-8").read().splitlines() if t]
    ids = torch.tensor(tok([t.lower() for t in texts], max_length=64, padding="max_length",
                           truncation=True).input_ids)
    with torch.no_grad():
        want = m.get_text_features(input_ids=ids, walk_type="short")
        want = (want / want.norm(dim=-1, keepdim=True)).numpy()
    got = load_file(sys.argv[4])["text_embeds"]
    diff = np.abs(got - want).max()
    print(f"normalised text embeddings: max |fgclip - FG-CLIP 2| = {diff:.2e}")
    assert diff <= 1e-5
print("ok")
