"""Reference outputs of the temporal fusion (`fusion: transformer`) for
crates/fgclip-vad/tests/fusion.rs, written to tests/fixtures/fusion/.

CLIP4Clip's seqTransf (Luo et al. 2022, modules/modeling.py) over T frame embeddings,
built from transformers' own CLIP modules: frame position embeddings added to the
normalised frames, a `CLIPEncoder` (pre-norm layers, QuickGELU, 64-wide heads by
default; here 2 heads of 16), then fgclip's zero-initialised `output` projection whose
mean over frames is added to the frames' mean. The weights are random and `output` is
NOT zero here, so every part of the module shapes the result; float64 throughout.

    python tools/make_fusion_fixture.py    # torch 2.x, transformers 5.x, safetensors
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig
from transformers.models.clip.modeling_clip import CLIPEncoder

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "fusion")
P, LAYERS, HEADS, MAX_FRAMES = 32, 2, 2, 6
B, T = 3, 5

torch.manual_seed(20261127)
cfg = CLIPTextConfig(
    hidden_size=P,
    intermediate_size=4 * P,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
)
cfg._attn_implementation = "eager"
encoder = CLIPEncoder(cfg).double().eval()
for name, p in encoder.named_parameters():
    with torch.no_grad():
        p.copy_(torch.randn_like(p) * (0.3 if p.dim() == 2 else 0.1) + (1.0 if "layer_norm" in name and name.endswith("weight") else 0.0))
pos = torch.randn(MAX_FRAMES, P, dtype=torch.float64) * 0.1
output = torch.nn.Linear(P, P).double()
with torch.no_grad():
    output.weight.copy_(torch.randn(P, P, dtype=torch.float64) * 0.2)
    output.bias.copy_(torch.randn(P, dtype=torch.float64) * 0.05)

# Everything the test reads is stored in float32: round it first, then compute in float64.
def f32(t):
    return t.float().double()


with torch.no_grad():
    for p in list(encoder.parameters()) + list(output.parameters()):
        p.copy_(f32(p))
pos = f32(pos)
frames = torch.randn(B, T, P, dtype=torch.float64)
frames = f32(frames / frames.norm(dim=-1, keepdim=True))
frames.requires_grad_(True)
pos.requires_grad_(True)

h = encoder(inputs_embeds=frames + pos[:T].unsqueeze(0)).last_hidden_state
fused = frames.mean(1) + output(h).mean(1)
video = fused / fused.norm(dim=-1, keepdim=True)
# A scalar of the normalised output, for gradients.
probe = f32(torch.randn(B, P, dtype=torch.float64))
(video * probe).sum().backward()

weights = {"temporal_fusion.frame_position_embeddings.weight": pos.detach()}
for name, p in encoder.named_parameters():
    weights[f"temporal_fusion.encoder.{name}"] = p.detach()
weights["temporal_fusion.output.weight"] = output.weight.detach()
weights["temporal_fusion.output.bias"] = output.bias.detach()
os.makedirs(OUT, exist_ok=True)
save_file({k: v.float().contiguous() for k, v in weights.items()}, os.path.join(OUT, "fusion.safetensors"))
save_file(
    {
        "frames": frames.detach().float(),
        "probe": probe.float(),
        "fused": fused.detach().float(),
        "video": video.detach().float(),
        "grad.frame_position_embeddings": pos.grad.float(),
        "grad.layers.0.self_attn.q_proj.weight": encoder.layers[0].self_attn.q_proj.weight.grad.float(),
        "grad.output.weight": output.weight.grad.float(),
    },
    os.path.join(OUT, "expected.safetensors"),
)
with open(os.path.join(OUT, "config.json"), "w") as f:
    json.dump({"hidden_size": P, "num_layers": LAYERS, "num_heads": HEADS, "max_frames": MAX_FRAMES}, f, indent=2)
    f.write("\n")
print("wrote", OUT)
