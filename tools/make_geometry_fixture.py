"""Make tests/fixtures/clip_gelu_p14: a random HF CLIPModel with a geometry unlike
clip_tiny's (patch 14, gelu, 3 heads, legacy eos_token_id 2), saved as a user downloads
one: f16 weights in two shards with model.safetensors.index.json, vocab.json +
merges.txt. expected.safetensors holds transformers' float32 outputs of those f16-rounded
weights, and the FG-CLIP dense patch grid computed with transformers' own modules.

Run with torch + transformers installed:  python tools/make_geometry_fixture.py SRC_TOKENIZER_DIR OUT_DIR
"""
import json
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

src_tok, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
config = CLIPConfig(
    text_config=dict(
        vocab_size=49408, hidden_size=24, intermediate_size=40, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    ),
    vision_config=dict(
        hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=3,
        image_size=56, patch_size=14, hidden_act="gelu",
    ),
    projection_dim=16,
)
model = CLIPModel(config).eval()
# Store in f16; the reference runs the f16-rounded values in f32.
model = model.half()
model.save_pretrained(out, safe_serialization=True, max_shard_size="2MB")
model = CLIPModel.from_pretrained(out, torch_dtype=torch.float32).eval()
for f in ["vocab.json", "merges.txt"]:
    shutil.copy(f"{src_tok}/{f}", f"{out}/{f}")

pixels = torch.randn(3, 3, 56, 56)
texts = ["a man attacks a woman inside a store", "顾客在超市正常购物", "cars collide!"]
from transformers import CLIPTokenizer
tok = CLIPTokenizer(f"{out}/vocab.json", f"{out}/merges.txt")
ids = torch.zeros(len(texts), 77, dtype=torch.long)
for i, t in enumerate(texts):
    row = tok(t)["input_ids"][:77]
    ids[i, : len(row)] = torch.tensor(row)
mask = (ids != 0).long()

with torch.no_grad():
    v = model.vision_model(pixel_values=pixels, output_hidden_states=True)
    image_embeds = model.visual_projection(v.pooler_output)
    t = model.text_model(input_ids=ids, attention_mask=mask)
    text_embeds = model.text_projection(t.pooler_output)
    # FG-CLIP dense path: last layer on hidden_states[-2] with value-only attention.
    x = v.hidden_states[-2]
    last = model.vision_model.encoder.layers[-1]
    a = last.self_attn
    x = x + a.out_proj(a.v_proj(last.layer_norm1(x)))
    x = x + last.mlp(last.layer_norm2(x))
    dense = model.visual_projection(model.vision_model.post_layernorm(x[:, 1:]))
    g = 56 // 14
    dense = dense.reshape(3, g, g, -1)

save_file(
    {
        "pixel_values": pixels.contiguous(),
        "input_ids": ids.contiguous(),
        "image_embeds_unnormalized": image_embeds.contiguous(),
        "text_embeds_unnormalized": text_embeds.contiguous(),
        "dense_patch_embeds": dense.contiguous(),
    },
    f"{out}/expected.safetensors",
)
json.dump({"texts": texts, "about": __doc__}, open(f"{out}/expected.json", "w"), ensure_ascii=False, indent=1)
print(sorted(__import__("os").listdir(out)))
