"""FG-CLIP v1's own batch layout (fgclip_v1_tiny/inputs.safetensors) -> fgclip's batch layout.

FG-CLIP's loader packs hard negatives per image (`fgclip_hard_boxes`, `fgclip_hard_nums`,
`fgclip_hard_input_ids`: each hard box's caption then its negatives) and pads ids with 49407.
DESIGN.md §3/§7's layout keeps one row per region: `hard_input_ids (B, N, H, 77)` (negatives
only) and `hard_mask (B, N, H)`, ids padded with 0 after the first <|endoftext|>. With T = 1 a
clip of one frame is FG-CLIP's image, so `check-loss` on the result must give FG-CLIP's loss.

Nothing here computes a loss: it only moves FG-CLIP's inputs into the other layout, and checks
that each hard box is one of the image's boxes and that its packed caption is that box's caption.

Usage: python tools/convert_fgclip_v1_batch.py FIXTURE_DIR   (writes FIXTURE_DIR/batch.safetensors)
"""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

EOT = 49407


def zero_pad(ids):
    """FG-CLIP pads with <|endoftext|>; DESIGN.md pads with 0 after the first one."""
    out = ids.copy()
    for row in out.reshape(-1, out.shape[-1]):
        hits = np.flatnonzero(row == EOT)
        if len(hits):
            row[hits[0] + 1:] = 0
    return out


def main(fixture):
    x = load_file(f"{fixture}/inputs.safetensors")
    pixels = x["pixel_values"]  # (B, 3, S, S)
    b = pixels.shape[0]
    boxes = x["boxes"]  # (B, N, 4) normalised
    n = boxes.shape[1]
    box_nums = x["box_nums"]
    box_ids = zero_pad(x["fgclip_box_input_ids"]).reshape(b, n, -1)
    length = box_ids.shape[-1]
    mask = np.zeros((b, 1, n), np.uint8)
    for bi in range(b):
        mask[bi, 0, : box_nums[bi]] = 1

    hard_ids_packed = zero_pad(x["fgclip_hard_input_ids"])
    hard_boxes, hard_nums = x["fgclip_hard_boxes"], x["fgclip_hard_nums"]
    per_box = hard_ids_packed.shape[0] // int(hard_nums.sum())  # caption + H negatives
    h = per_box - 1
    hard_ids = np.zeros((b, n, h, length), np.int64)
    hard_mask = np.zeros((b, n, h), np.uint8)
    row = 0
    for bi in range(b):
        for j in range(hard_nums[bi]):
            match = [i for i in range(box_nums[bi]) if np.array_equal(boxes[bi, i], hard_boxes[bi, j])]
            assert len(match) == 1, f"hard box {bi},{j} is not exactly one of image {bi}'s boxes"
            i = match[0]
            assert np.array_equal(hard_ids_packed[row], box_ids[bi, i]), "packed caption != box caption"
            hard_ids[bi, i] = hard_ids_packed[row + 1 : row + per_box]
            hard_mask[bi, i] = 1
            row += per_box
    assert row == hard_ids_packed.shape[0]

    save_file(
        {
            "pixel_values": np.ascontiguousarray(pixels[:, None]),
            "global_input_ids": zero_pad(x["short_input_ids"]),
            "global_long_input_ids": zero_pad(x["long_input_ids"]),
            "global_long_mask": np.ones(b, np.uint8),
            "region_input_ids": box_ids,
            "boxes": np.ascontiguousarray(boxes[:, None]),
            "bbox_mask": mask,
            "hard_input_ids": hard_ids,
            "hard_mask": hard_mask,
        },
        f"{fixture}/batch.safetensors",
    )
    print(f"wrote {fixture}/batch.safetensors: B {b}, T 1, N {n}, H {h}, {int(hard_mask.any(-1).sum())} regions with negatives")


if __name__ == "__main__":
    main(sys.argv[1])
