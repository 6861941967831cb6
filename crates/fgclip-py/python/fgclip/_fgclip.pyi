"""Type stubs of the native module (crates/fgclip-py/src); use it through `fgclip`."""

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

__version__: str

class FgclipError(Exception):
    """An fgclip operation failed; the message is the command line's."""

class Model:
    """A loaded CLIP, FG-CLIP v1 or FG-CLIP 2 model (see `fgclip.load`)."""

    @property
    def kind(self) -> str:
        """"clip" (CLIP and FG-CLIP v1) or "fgclip2"."""
    @property
    def path(self) -> str: ...
    @property
    def embed_dim(self) -> int: ...
    @property
    def config(self) -> Dict[str, Any]:
        """config.json as a dict."""
    @property
    def preprocessing(self) -> str:
        """"squash" or "center_crop" (CLIP), "naflex" (FG-CLIP 2)."""
    def preprocess(self, frames: np.ndarray) -> Union[np.ndarray, Dict[str, np.ndarray]]:
        """uint8 (N, H, W, 3) RGB frames to the model's inputs as `detect` prepares them."""
    def embed_images(
        self, images: Union[np.ndarray, Dict[str, np.ndarray]], batch_size: int = 32
    ) -> np.ndarray:
        """L2-normalised (N, D) embeddings of frames or of `preprocess`'s output."""
    def dense(
        self, images: Union[np.ndarray, Dict[str, np.ndarray]], batch_size: int = 32
    ) -> Union[np.ndarray, List[np.ndarray]]:
        """(N, g, g, D) patch grids (CLIP-shaped), or per-image (h, w, D) arrays (FG-CLIP 2)."""
    def regions(
        self,
        images: Union[np.ndarray, Dict[str, np.ndarray]],
        boxes: np.ndarray,
        image_index: Optional[List[int]] = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """L2-normalised (K, D) region embeddings: ROI Align 1×1 of (K, 4) boxes on the dense features."""
    def embed_texts(
        self, texts: List[str], walk: Optional[str] = None, batch_size: int = 32
    ) -> np.ndarray:
        """L2-normalised (M, D) text embeddings; walk "short", "long" or "box"."""

def load(
    path: str,
    device: str = "cpu",
    precision: str = "f32",
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
) -> Model: ...
def read_frames(
    video: str,
    timestamps: Optional[Tuple[float, float]] = None,
    sample: Optional[int] = None,
    size: Optional[int] = None,
    preprocess: str = "squash",
    progress: Optional[Any] = None,
) -> Tuple[np.ndarray, np.ndarray]: ...
def evaluate(
    scores: Union[str, Dict[str, np.ndarray]],
    gt: str,
    protocol: str = "ucf-crime",
    allow_length_mismatch: Optional[str] = None,
) -> Dict[str, Any]: ...
def validate(
    annotations: Optional[str] = None,
    videos: Optional[str] = None,
    hard_negatives: Optional[str] = None,
    max_anns: int = 4,
) -> Dict[str, Any]: ...
def detect(
    videos: List[str],
    model: str,
    out: str,
    prompts: str = "ucf-crime",
    stride: int = 16,
    smooth: int = 1,
    threshold: float = 0.5,
    top: int = 5,
    frames_per_snippet: Optional[int] = None,
    batch_size: int = 32,
    scale: Optional[float] = None,
    gt: Optional[str] = None,
    protocol: str = "ucf-crime",
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
    thumbnails: bool = True,
    progress: Optional[Any] = None,
) -> List[Dict[str, Any]]: ...
def train(
    annotations: str,
    videos: str,
    out: str,
    config: Union[Dict[str, Any], str, None] = None,
    model: Optional[str] = None,
    preset: Optional[str] = None,
    tokenizer: Optional[str] = None,
    resume: Union[bool, str, None] = None,
    overwrite: bool = False,
    on_step: Optional[Any] = None,
    device: str = "cpu",
    progress: bool = False,
) -> Dict[str, Any]: ...
def extract(
    videos: List[str],
    model: str,
    stride: int = 16,
    frames_per_snippet: Optional[int] = None,
    batch_size: int = 32,
    preprocess: Optional[str] = None,
    max_num_patches: Optional[int] = None,
    progress: Optional[Any] = None,
) -> Dict[str, np.ndarray]: ...
