"""fgclip: fine-grained CLIP for video anomaly detection, from Python.

The Rust core of the ``fgclip`` command line, imported: models (CLIP, FG-CLIP v1, FG-CLIP 2),
embeddings, frame reading, zero-shot detection, evaluation and annotation checks, with numpy
arrays in and out and no PyTorch.

    >>> import fgclip
    >>> model = fgclip.load("runs/a/final")
    >>> frames, indices = fgclip.read_frames("Shooting008_x264.mp4", sample=8)
    >>> model.embed_images(frames).shape
    (8, 512)
    >>> [d] = fgclip.detect(["Shooting008_x264.mp4"], model, out="det/")
    >>> d.predicted_class, d.frame_scores[:5]

Errors are Python exceptions with the command line's messages: ``ValueError`` for wrong
arrays and arguments, ``FileNotFoundError`` for missing files, ``fgclip.FgclipError`` for the
rest (a damaged video, a model that does not load).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _fgclip
from ._fgclip import FgclipError, Model, __version__

__all__ = [
    "Detection",
    "FgclipError",
    "Model",
    "__version__",
    "detect",
    "evaluate",
    "extract",
    "load",
    "read_frames",
    "train",
    "validate",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int, str], Any], None]


class _Bar:
    """``progress=True``: a tqdm bar (``tqdm.auto``: a widget in notebooks) when tqdm is
    installed, else none; a callable is called as ``progress(done, total, message)``."""

    def __init__(self, progress: Progress):
        self.bar = None
        self.callback = None
        if callable(progress):
            self.callback = progress
        elif progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=0)
            self.callback = self._update

    def _update(self, done: int, total: int, message: str) -> None:
        if message and message != self.bar.desc:
            self.bar.set_description(message)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self):
        return self.callback

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def load(
    path: PathLike,
    device: str = "cpu",
    precision: str = "f32",
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
) -> Model:
    """Load an HF CLIP, FG-CLIP v1 or FG-CLIP 2 folder, or a run's ``final/``.

    ``device``: "cpu" (or "cuda"/"cuda:N" in CUDA builds). ``precision``: "f32" or "bf16".
    ``preprocess`` (CLIP-shaped models): "squash" or "center_crop" (HF CLIPImageProcessor's);
    default: what the model was trained with, else its ``preprocessor_config.json``.
    ``max_num_patches`` (FG-CLIP 2): a fixed patch budget per frame.
    """
    return _fgclip.load(os.fspath(path), device, precision, preprocess, max_num_patches)


def read_frames(
    video: PathLike,
    timestamps: Optional[Tuple[float, float]] = None,
    sample: Optional[int] = None,
    size: Optional[int] = None,
    preprocess: str = "squash",
    progress: Progress = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Frames of ``video`` as ``fgclip frames`` takes them, with OpenCV's frame numbering.

    ``timestamps``: the segment [start, end] in seconds (default: the whole video);
    ``sample``: that many frames at the segment's centres (default: every frame);
    ``size``: brought to size×size by ``preprocess`` ("squash" or "center_crop").
    Returns ``(frames, indices)``: uint8 (n, H, W, 3) RGB and their frame numbers.
    ``progress``: True for a tqdm bar, or a callable ``(done, total, message)``.
    """
    with _Bar(progress) as cb:
        return _fgclip.read_frames(os.fspath(video), timestamps, sample, size, preprocess, cb)


def evaluate(
    scores: Union[PathLike, Dict[str, np.ndarray]],
    gt: PathLike,
    protocol: str = "ucf-crime",
    allow_length_mismatch: Optional[str] = None,
) -> Dict[str, Any]:
    """Frame-level ROC AUC and AP, as ``fgclip eval --json`` reports them.

    ``scores``: a folder of ``detect`` JSON or ``<stem>.npy`` files, or a dict mapping each
    video's stem to its 1-D frame scores. ``gt``: UCF-Crime's or XD-Violence's ground truth
    (``protocol`` "ucf-crime" or "xd-violence"). ``allow_length_mismatch``: "cut" or "pad".
    """
    if not isinstance(scores, dict):
        scores = os.fspath(scores)
    return _fgclip.evaluate(scores, os.fspath(gt), protocol, allow_length_mismatch)


def validate(
    annotations: Optional[PathLike] = None,
    videos: Optional[PathLike] = None,
    hard_negatives: Optional[PathLike] = None,
    max_anns: int = 4,
) -> Dict[str, Any]:
    """Check an annotation file (and, with ``videos``, its videos) as ``fgclip validate``."""
    f = lambda p: None if p is None else os.fspath(p)  # noqa: E731
    return _fgclip.validate(f(annotations), f(videos), f(hard_negatives), max_anns)


def extract(
    videos: Union[PathLike, Sequence[PathLike]],
    model: Union[Model, PathLike],
    stride: int = 16,
    frames_per_snippet: Optional[int] = None,
    batch_size: int = 32,
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
    progress: Progress = None,
) -> Dict[str, np.ndarray]:
    """Snippet embeddings of each video, as ``fgclip extract`` writes them to ``.npy``.

    One L2-normalised (snippets, D) array a video, keyed by its stem; a snippet every
    ``stride`` frames (its centre frame, or ``frames_per_snippet`` averaged or fused by the
    model's temporal transformer). For VadCLIP-style pipelines. ``progress``: True for a
    tqdm bar, or a callable ``(done, total, message)`` (frames of the current video).
    """
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    model_path = os.fspath(model.path if isinstance(model, Model) else model)
    with _Bar(progress) as cb:
        return _fgclip.extract(
            [os.fspath(v) for v in videos],
            model_path,
            stride,
            frames_per_snippet,
            batch_size,
            preprocess,
            max_num_patches,
            cb,
        )


def train(
    annotations: PathLike,
    videos: PathLike,
    out: PathLike,
    config: Optional[Union[Dict[str, Any], PathLike]] = None,
    model: Optional[Union[Model, PathLike]] = None,
    preset: Optional[str] = None,
    tokenizer: Optional[PathLike] = None,
    resume: Union[bool, PathLike, None] = None,
    overwrite: bool = False,
    on_step: Optional[Any] = None,
    device: str = "cpu",
    progress: bool = False,
) -> Dict[str, Any]:
    """Train as ``fgclip train`` does: the same run folder, metrics, checkpoints and ``final/``.

    ``config``: a dict of training settings (missing keys take their defaults, as in a config
    file; ``fgclip train --print-config`` lists them) or a path to a config file. ``model``: a
    folder (or loaded :class:`Model`) to fine-tune, or ``preset``: a built-in geometry trained
    from random weights. ``resume``: True for the newest checkpoint, or a checkpoint folder.
    ``on_step(metrics: dict)`` runs after every step; an exception in it, or Ctrl-C, stops the
    run at that step boundary with its checkpoint written, and is raised: ``resume=True``
    then continues to the same weights. Under ``mpirun`` every rank calls this and they train
    data-parallel, as the command line does. Returns the run's summary.
    """
    if isinstance(model, Model):
        model = model.path
    f = lambda p: None if p is None else os.fspath(p)  # noqa: E731
    if config is not None and not isinstance(config, dict):
        config = os.fspath(config)
    if resume is not None and not isinstance(resume, bool):
        resume = os.fspath(resume)
    return _fgclip.train(
        os.fspath(annotations),
        os.fspath(videos),
        os.fspath(out),
        config,
        f(model),
        preset,
        f(tokenizer),
        resume,
        overwrite,
        on_step,
        device,
        progress,
    )


@dataclass
class Detection:
    """One video's zero-shot detection: what ``fgclip detect`` writes to ``<stem>.json``."""

    video: str
    fps: float
    frame_count: int
    classes: List[str]
    predicted_class: str
    max_score: float
    frame_scores: np.ndarray
    """(frame_count,) anomaly score of every frame."""
    class_probs: np.ndarray
    """(snippets, classes) probabilities of each snippet."""
    snippets: List[Dict[str, Any]]
    segments: List[Dict[str, Any]]
    """The top segments: start/end seconds and frames, class, score, thumbnail."""
    out: str
    """The folder ``detect`` wrote this video's files into."""
    raw: Dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.video))[0]

    def save(self, directory: PathLike) -> List[str]:
        """Copy this video's files (JSON, CSV, plots, thumbnails) into ``directory``."""
        import shutil

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        copied = []
        for name in sorted(os.listdir(self.out)):
            if name == f"{self.stem}.{name.rsplit('.', 1)[-1]}" or name.startswith(f"{self.stem}_segment"):
                shutil.copy2(os.path.join(self.out, name), os.path.join(directory, name))
                copied.append(name)
        return copied


def detect(
    videos: Union[PathLike, Sequence[PathLike]],
    model: Union[Model, PathLike],
    out: Optional[PathLike] = None,
    prompts: str = "ucf-crime",
    stride: int = 16,
    smooth: int = 1,
    threshold: float = 0.5,
    top: int = 5,
    frames_per_snippet: Optional[int] = None,
    batch_size: int = 32,
    scale: Optional[float] = None,
    gt: Optional[PathLike] = None,
    protocol: str = "ucf-crime",
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
    thumbnails: bool = True,
    progress: Progress = None,
) -> List[Detection]:
    """Zero-shot anomaly detection, as ``fgclip detect``: one :class:`Detection` a video.

    ``model``: a loaded :class:`Model` (its folder is used) or a model folder. ``out``: where
    the command's files go (default: a temporary folder; ``Detection.save`` copies them).
    ``prompts``: "ucf-crime", "xd-violence", their Chinese "ucf-crime.zh"/"xd-violence.zh",
    or a JSON file. ``progress``: True for a tqdm bar, or a callable ``(done, total,
    message)`` (frames of the current video). The other arguments are ``detect``'s flags.
    """
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    if isinstance(model, Model):
        model_path = os.fspath(model.path)
    else:
        model_path = os.fspath(model)
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="fgclip-detect-")
    out = os.fspath(out)
    with _Bar(progress) as cb:
        raw = _detect(videos, model_path, out, prompts, stride, smooth, threshold, top,
                      frames_per_snippet, batch_size, scale, gt, protocol, preprocess,
                      max_num_patches, thumbnails, cb)
    return [
        Detection(
            video=r["video"],
            fps=r["fps"],
            frame_count=r["frame_count"],
            classes=r["classes"],
            predicted_class=r["predicted_class"],
            max_score=r["max_score"],
            frame_scores=np.asarray(r["frame_scores"], dtype=np.float32),
            class_probs=np.asarray(
                [s["probabilities"] for s in r["snippets"]], dtype=np.float32
            ).reshape(len(r["snippets"]), len(r["classes"])),
            snippets=r["snippets"],
            segments=r["top_segments"],
            out=out,
            raw=r,
        )
        for r in raw
    ]


def _detect(videos, model_path, out, prompts, stride, smooth, threshold, top,
            frames_per_snippet, batch_size, scale, gt, protocol, preprocess,
            max_num_patches, thumbnails, cb):
    return _fgclip.detect(
        [os.fspath(v) for v in videos],
        model_path,
        out,
        prompts,
        stride,
        smooth,
        threshold,
        top,
        frames_per_snippet,
        batch_size,
        scale,
        None if gt is None else os.fspath(gt),
        protocol,
        preprocess,
        max_num_patches,
        thumbnails,
        cb,
    )
