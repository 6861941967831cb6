"""OpenCV's figures for `fgclip bench decode`, on the same files: whole-video decode +
resize (cv2.INTER_CUBIC) frames/s, and the median time to take T uniformly spaced frames
from a [start, end] segment by setting CAP_PROP_POS_FRAMES (a fresh capture each run).

    python bench/decode_opencv.py VIDEO... [--size 224] [--frames 8] [--segment 10 70]
"""
import argparse
import statistics
import time

import cv2

p = argparse.ArgumentParser()
p.add_argument("videos", nargs="+")
p.add_argument("--size", type=int, default=224)
p.add_argument("--frames", type=int, default=8)
p.add_argument("--segment", type=float, nargs=2, default=[10.0, 70.0])
p.add_argument("--iters", type=int, default=5)
a = p.parse_args()
print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
for v in a.videos:
    cap = cv2.VideoCapture(v)
    n = 0
    t = time.perf_counter()
    while True:
        ok, f = cap.read()
        if not ok:
            break
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (a.size, a.size), interpolation=cv2.INTER_CUBIC)
        n += 1
    full = n / (time.perf_counter() - t)
    fps = cap.get(cv2.CAP_PROP_FPS)
    first, end = int(a.segment[0] * fps), int(a.segment[1] * fps)
    length = end - first
    picks = [first + int((j + 0.5) * length / a.frames) for j in range(a.frames)]
    ms = []
    for _ in range(a.iters + 1):
        t = time.perf_counter()
        cap = cv2.VideoCapture(v)
        for i in picks:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, f = cap.read()
            cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (a.size, a.size), interpolation=cv2.INTER_CUBIC)
        ms.append((time.perf_counter() - t) * 1e3)
    print(f"{v}: {n} frames, decode+resize {a.size} {full:.1f} frames/s; {a.frames} frames from {a.segment} s in {statistics.median(ms[1:]):.1f} ms (median)")
