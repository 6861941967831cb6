"""FG-CLIP 2's `FG_CLIP2_Model` (fgclip2/model/strcs/fgclip2.py) with the casts that keep its
region and hard-negative terms from running patched out, for fgclip's fixtures and benchmarks.

The changes are applied to the source text at import, each asserted:
  - `x_rois.type(torch.bfloat16)` (twice) is removed: in float32 or float64 it makes the ROI
    features bfloat16 and the matmul with the text embeddings fails, which the `try/except: pass`
    around the region and hard-negative terms turns into dropping both terms silently;
  - `roi_align(real_feature_map.type(torch.float32), ...)` and `_denormalize_boxes` keep the
    feature map's and the boxes' dtype (so the model runs in float64 too);
  - `except: pass` becomes `except: raise`, so that an error is an error.
"""
import importlib.util
import types


def patched_model_class():
    spec = importlib.util.find_spec("fgclip2.model.strcs.fgclip2")
    src = open(spec.origin, encoding="utf-8").read()
    for old, new, count in [
        ("bbox_vision_outputs = x_rois.type(torch.bfloat16)", "bbox_vision_outputs = x_rois", 1),
        ("hard_bbox_image_embeds = x_rois.type(torch.bfloat16)", "hard_bbox_image_embeds = x_rois", 1),
        ("roi_align(real_feature_map.type(torch.float32),", "roi_align(real_feature_map,", 3),
        ("denormed_boxes.append(new_boxes.type(torch.float32))", "denormed_boxes.append(new_boxes)", 1),
        ("        except:\n            pass\n", "        except:\n            raise\n", 1),
    ]:
        assert src.count(old) == count, (old, src.count(old))
        src = src.replace(old, new)
    module = types.ModuleType("fgclip2.model.strcs.fgclip2_patched")
    module.__package__ = "fgclip2.model.strcs"
    module.__file__ = spec.origin
    exec(compile(src, spec.origin, "exec"), module.__dict__)
    return module.FG_CLIP2_Model
