"""Checks of fgclip's GPU results against the repository's fixtures, for tools/gpu/check.sh
(the same comparisons and tolerances as tests/embed_cli.rs and tests/check_loss.rs, which
run on CPU). Needs numpy and safetensors.

    python3 tools/gpu/compare.py prep DIR                 # pixels.safetensors, captions.txt
    python3 tools/gpu/compare.py embed OUT.safetensors    # vs clip_tiny/expected.safetensors
    python3 tools/gpu/compare.py loss STDOUT.json GRADS.safetensors
    python3 tools/gpu/compare.py roi OUT.safetensors      # vs roi_align/cases.safetensors (torchvision)
    python3 tools/gpu/compare.py classes A.json B.json    # same predicted class (detect outputs)
Exit status 1 when a check fails.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

# FGCLIP_TF32=1: tolerances for f32 models whose matmuls ran in TF32 (10-bit mantissa), as
# burn's CUDA backend does on tensor-core GPUs (cubek-matmul promotes f32 to TF32 with no
# switch), like PyTorch with torch.backends.cuda.matmul.allow_tf32 = True.
TF32 = os.environ.get("FGCLIP_TF32") == "1"
FIX = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")
failed = []


def check(name, err, tol, tf32_tol=None):
    if TF32 and tf32_tol is not None:
        name, tol = f"{name} [TF32, f32 tolerance {tol:g}: {'met' if err <= tol else 'not met'}]", tf32_tol
    ok = err <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max error {err:.3g} (tolerance {tol:g})")
    if not ok:
        failed.append(name)


def l2(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main():
    what = sys.argv[1]
    if what == "prep":
        exp = load_file(os.path.join(FIX, "clip_tiny", "expected.safetensors"))
        texts = json.load(open(os.path.join(FIX, "clip_tiny", "expected.json")))["texts"]
        save_file({"pixel_values": exp["pixel_values"]}, os.path.join(sys.argv[2], "pixels.safetensors"))
        with open(os.path.join(sys.argv[2], "captions.txt"), "w") as f:
            f.write("\n".join(texts) + "\n")
        return
    if what == "embed":
        got = load_file(sys.argv[2])
        exp = load_file(os.path.join(FIX, "clip_tiny", "expected.safetensors"))
        check("image_embeds", np.abs(got["image_embeds"] - l2(exp["image_embeds_unnormalized"])).max(), 1e-4, 3e-3)
        check("patch_embeds", np.abs(got["patch_embeds"] - exp["dense_patch_embeds"]).max(), 1e-4, 5e-3)
        check("text_embeds", np.abs(got["text_embeds"] - l2(exp["text_embeds_unnormalized"])).max(), 1e-4, 3e-3)
        check("input_ids", float(np.abs(got["input_ids"] - exp["input_ids"]).max()), 0)
    elif what == "loss":
        got = json.load(open(sys.argv[2]))
        want = json.load(open(os.path.join(FIX, "fgclip_batch", "expected.json")))
        for key in ["loss", "loss_global", "loss_region"]:
            check(key, abs(got[key] - want[key]), 1e-4, 5e-3)
        batch = load_file(os.path.join(FIX, "fgclip_batch", "batch.safetensors"))
        grads = load_file(sys.argv[3])
        for key in sorted(k for k in batch if k.startswith("grad.")):
            ref = batch[key]
            check(f"{key} (relative)", np.abs(grads[key[5:]] - ref).max() / np.abs(ref).max(), 1e-3, 3e-2)
    elif what == "fgclip_v1":
        got = json.load(open(sys.argv[2]))
        want = json.load(open(os.path.join(FIX, "fgclip_v1_tiny", "expected.json")))
        for key in ["loss", "loss_global", "loss_global_long", "loss_region", "loss_hard_negative"]:
            check(f"FG-CLIP v1 {key}", abs(got[key] - want[key]), 1e-5, 5e-3)
    elif what == "roi":
        got = load_file(sys.argv[2])
        want = load_file(os.path.join(FIX, "roi_align", "cases.safetensors"))
        names = [c["name"] for c in json.load(open(os.path.join(FIX, "roi_align", "cases.json")))["cases"]]
        out_err = max(float(np.abs(got[f"{n}_output"] - want[f"{n}_output"]).max()) for n in names)
        grad_err = max(float(np.abs(got[f"{n}_input_grad"] - want[f"{n}_input_grad"]).max()) for n in names)
        check(f"roi_align outputs ({len(names)} cases)", out_err, 1e-5, 3e-3)
        check(f"roi_align input gradients ({len(names)} cases)", grad_err, 1e-5, 3e-3)
    elif what == "classes":
        a, b = (json.load(open(p)) for p in sys.argv[2:4])
        check(f"predicted class {a['predicted_class']} vs {b['predicted_class']}", float(a["predicted_class"] != b["predicted_class"]), 0)
        fa, fb = np.array(a["frame_scores"]), np.array(b["frame_scores"])
        print(f"     frame scores: max difference {np.abs(fa - fb).max():.3g}")
    else:
        sys.exit(f"unknown check {what}")
    if failed:
        sys.exit(f"{len(failed)} check(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
