"""A method on a loaded CLIP: dense encoder + text classifiers + the method, for batches of images.

This is the object the CLI, the paper protocol and the segmentor share; it holds no dataset knowledge. The
method (:mod:`cliptrase.method.interface`) decides what the tower computes and how features become labels; the
predictor adds the text classifier, the precision and the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from cliptrase.method.interface import DenseMethod, MethodContext
from cliptrase.method.labels import SegmentOutput
from cliptrase.method.trase import CLIPtrase, CLIPtraseOptions
from cliptrase.models.clip import LoadedClip
from cliptrase.models.dense import PAPER_POS_OFFSET, DenseEncoder, DenseFeatures
from cliptrase.models.text import cached_text_classifier, load_templates, text_weights_fingerprint
from cliptrase.utils.profiling import stage

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Image-tower precisions; fp32 is the exact (golden) setting."""


class Predictor:
    """Runs a method with a loaded CLIP (never modified).

    Args:
        clip: the loaded model bundle.
        method: the method (:func:`cliptrase.method.zoo.build_method`); default CLIPtrase as the authors.
        pos_offset: positional-table interpolation offset (0.1 = the authors'; None = resize by size).
        templates: prompt template set name.
        precision: ``fp32`` (exact, default), ``bf16`` or ``fp16``: autocast of the image tower and the
            method's features; the tokens, q/k/v and everything after them are cast back to fp32.
        compile: ``torch.compile`` the unmodified leading blocks of the image tower (see
            :class:`~cliptrase.models.dense.DenseEncoder`); the first call per input shape compiles.
    """

    def __init__(
        self,
        clip: LoadedClip,
        *,
        method: DenseMethod | None = None,
        pos_offset: float | None = PAPER_POS_OFFSET,
        templates: str = "imagenet80",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.clip = clip
        self.method = (method if method is not None else CLIPtrase.from_fields()).to(self.device)
        self.encoder = DenseEncoder(clip.model.visual, pos_offset=pos_offset, compile=compile)
        self.templates = load_templates(templates)

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.clip.model.parameters()).device

    @property
    def logit_scale(self) -> float:
        """CLIP's ``logit_scale.exp()`` (100 for OpenAI weights)."""
        return float(self.clip.model.logit_scale.detach().exp())

    def text_classifier(self, names: Sequence[str]) -> Tensor:
        """(len(names), E) classifier rows, cached on disk (random weights: keyed by a weights hash)."""
        names = list(names)
        if not names or any(not n.strip() for n in names):
            raise ValueError(f"class list must be non-empty and hold no empty names, got {names!r}")
        model_id = self.clip.model_id
        if self.clip.is_random:  # same name, different weights per seed: key by the weights themselves
            model_id += ":" + text_weights_fingerprint(self.clip.model)
        with stage("text"):
            return cached_text_classifier(
                self.clip.model, self.clip.tokenizer, model_id, names, self.templates
            )

    @torch.no_grad()
    def encode(
        self, images: Tensor, text: Tensor | None = None, window: Tensor | None = None
    ) -> DenseFeatures:
        """Dense features of the method for (B, 3, H, W) normalised images (``text``: the classifier, for
        methods that feed a first prediction back; ``window``: the whole window ``images`` was cut from,
        :attr:`MethodContext.window`)."""
        with stage("encoder"):
            images = images.to(self.device)
            ctx = MethodContext(
                images=images,
                text=None if text is None else text.to(self.device),
                logit_scale=self.logit_scale,
                mean=tuple(self.clip.mean),
                std=tuple(self.clip.std),
                window=None if window is None else window.to(self.device),
            )
            if self.precision == "fp32":
                return self.method.encode(self.encoder, ctx)
            with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]):
                feats = self.method.encode(self.encoder, ctx)
            feats.tokens = torch.nn.functional.normalize(feats.tokens.float(), dim=-1)
            feats.qkv = {k: tuple(t.float() for t in v) for k, v in feats.qkv.items()}
            return feats

    @torch.no_grad()
    def segment(
        self, features: DenseFeatures, text: Tensor, opts: CLIPtraseOptions, out_hw: tuple[int, int]
    ) -> SegmentOutput:
        """The method's labelling of encoded features, output at ``out_hw``."""
        return self.method.segment(features, text.to(self.device), self.logit_scale, out_hw, opts)

    def __call__(self, images: Tensor, text: Tensor, opts: CLIPtraseOptions) -> SegmentOutput:
        """The method on a batch (B, 3, H, W) of normalised images; output at the input size."""
        return self.segment(self.encode(images, text), text, opts, tuple(images.shape[-2:]))
