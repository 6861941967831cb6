"""Expected frame numbers for fgclip's segment rule, made the way the annotations' authors
and OpenCV compute them: a timestamp is a decimal string in the JSON, parsed by Python's
float(), multiplied by the video's fps as an IEEE double and truncated by int() (the
frame OpenCV seeks to with CAP_PROP_POS_FRAMES). Writes
tests/fixtures/frame_rule/expected.json.gz: timestamps "0.00" to "600.00" in steps of
0.01 at 25, 30 and 30000/1001 fps.

    python3 tools/make_frame_rule_fixture.py
"""
import gzip
import json
import os

FPS = {"25": 25.0, "30": 30.0, "30000/1001": 30000 / 1001}
stamps = [f"{i // 100}.{i % 100:02d}" for i in range(60001)]
out = {
    "about": "frames[fps][k] = int(float(timestamps[k]) * fps), Python 3 doubles; "
    "timestamps[k] is the decimal string '0.00' .. '600.00' in steps of 0.01",
    "first": "0.00",
    "last": "600.00",
    "step_hundredths": 1,
    "fps": FPS,
    "frames": {name: [int(float(s) * fps) for s in stamps] for name, fps in FPS.items()},
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "frame_rule", "expected.json.gz")
with gzip.open(path, "wt") as f:
    json.dump(out, f, separators=(",", ":"))
# The cases of issue 10, where a nearest-integer snap would be off by one.
assert int(float("4.1") * 30.0) == 122 and int(float("1.16") * 25.0) == 28 and int(float("4.52") * 25.0) == 112
print(path, sum(int(float(s) * f) != round(float(s) * f) for s in stamps for f in FPS.values() if abs(round(float(s) * f) - float(s) * f) < 1e-6))
