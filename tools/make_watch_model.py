#!/usr/bin/env python3
"""The fire-recognising model the `watch` tests take as an input (tests/fixtures/watch_model/).

It is a test *input*, not an expected value: the tests assert what `fgclip watch` does with
it on live streams (an event where the synthetic fire starts, none on a normal stream).

Usage: tools/make_watch_model.py FGCLIP_BINARY [OUT=tests/fixtures/watch_model]

Trains `fgclip demo`'s model (the `demo` preset: CLIP, vision 96 px / patch 12 / 4 layers,
text 3 layers, projection 64, trained from scratch with FG-CLIP's loss for 1200 steps on the
960-video synthetic set, seed 7), then stores its weights as float16 (numpy + safetensors:
half the size; fgclip reads float16 checkpoints) with its config, fgclip.json,
preprocessor_config.json and the prompts of the synthetic normal scene and fire. The tokenizer is open_clip's
BPE built into fgclip (`--tokenizer builtin`). Needs: numpy, safetensors.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def main() -> None:
    fgclip = sys.argv[1]
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/watch_model")
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        t = time.time()
        run = subprocess.run([fgclip, "demo", "--out", str(demo), "--quiet"],
                             check=True, capture_output=True, text=True)
        seconds = time.time() - t
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        final = demo / "run" / "final"
        out.mkdir(parents=True, exist_ok=True)
        weights = load_file(str(final / "model.safetensors"))
        half = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in weights.items()}
        save_file(half, str(out / "model.safetensors"))
        for name in ["config.json", "fgclip.json", "preprocessor_config.json"]:
            shutil.copy(final / name, out / name)
        # The classes the tests watch for: the synthetic set's normal scene and its fire.
        # (With all five classes this small model also raises "Fighting" where two people
        # cross in a normal clip; the fire-watching camera is the tested case.)
        prompts = json.loads((demo / "data" / "prompts.json").read_text())
        prompts["classes"] = [c for c in prompts["classes"] if c["name"] == "Fire"]
        prompts["_about"] = "The synthetic set's normal and fire prompts (tools/make_watch_model.py)."
        (out / "prompts.json").write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n")
        eval_ = json.loads((demo / "eval.json").read_text())
    info = {
        "made_by": "tools/make_watch_model.py",
        "training_seconds": round(seconds, 1),
        "train_steps": summary["train_steps"],
        "held_out_roc_auc": summary["roc_auc"],
        "per_class_roc_auc": {c["class"]: c["roc_auc"] for c in eval_["per_class"]},
        "parameters": int(sum(v.size for v in weights.values())),
        "model_bytes": (out / "model.safetensors").stat().st_size,
    }
    (out / "made.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
