"""Make tests/fixtures/resize/*.npy: a random RGB image and Pillow's BICUBIC resizes of it
(down, up, mixed; pil_WxH.npy) and its BILINEAR ones (pil_bilinear_WxH.npy, FG-CLIP 2's
filter), the reference for data/resize.rs.

    python tools/make_resize_fixture.py tests/fixtures/resize
"""
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
rng = np.random.default_rng(0)
src = rng.integers(0, 256, size=(47, 61, 3), dtype=np.uint8)
np.save(f"{out}/src_61x47.npy", src)
for w, h in [(16, 16), (224, 224), (30, 90)]:
    np.save(f"{out}/pil_{w}x{h}.npy", np.asarray(Image.fromarray(src).resize((w, h), Image.BICUBIC)))
    np.save(f"{out}/pil_bilinear_{w}x{h}.npy",
            np.asarray(Image.fromarray(src).resize((w, h), Image.BILINEAR)))
print(Image.__version__ if hasattr(Image, "__version__") else "")
