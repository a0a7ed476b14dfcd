"""The registered mmseg segmentor: wires preprocessing, whole/slide inference and the method; computes
nothing itself.

Call graph (mirrors mmseg's ``EncoderDecoder`` docstring)::

    test_step -> ClipSegDataPreProcessor (x/255, RGB, CLIP mean/std: the authors' ToTensor+Normalize)
              -> predict
                   paper:    Predictor (method + classifier), S x S batch -> labels (background collapsed)
                   standard: per image sliding_window_list(window_outputs, crop, stride) (crop 0: whole image)
                             window_outputs: fit_to_patches (floor the grid or pad, protocol.pad_to)
                                            -> encode -> logits over the window (or its region rows)
                             -> bilinear to the original size -> [PAMR] -> softmax(logit_scale * cos)
                             -> max over each class's synonyms -> [area_thd] -> prob_thd -> argmax
              -> data_sample.pred_sem_seg

The protocol's settings for the dataset are resolved once (:meth:`ProtocolConfig.for_dataset`) and the
method's switches are read from the validated :class:`MethodConfig`; nothing here re-derives a default.

In sliding windows CLIPtrase clusters and votes inside each window. With ``vote=mean_logits`` (the default
of the standard protocol, as the authors' d2 version) each pixel gets its region's mean cosine score, so
overlapping windows average like any dense method; with ``vote=majority`` a window contributes a one-hot
map of its voted labels, and the windows' votes are averaged. Either way a voted window is passed on as
its K rows and its region map (:class:`~cliptrase.inference.window_scores.RegionScores`), stitched, and
labelled from the rows (on the CPU without any prompt map, ``inference/region_labels.py``; elsewhere a chunk
of prompts at a time): the labels of the (P, h, w) maps, which are never formed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import PixelData
from mmseg.models.segmentors import BaseSegmentor
from omegaconf import OmegaConf
from torch import Tensor

from cliptrase.config import DatasetProtocol, MethodConfig, ProtocolConfig
from cliptrase.inference.region_labels import stitched_labels
from cliptrase.inference.scoring import scores_to_labels
from cliptrase.inference.sliding import fit_to_patches, sliding_window_list
from cliptrase.inference.window_scores import RegionScores, StitchedScores, dense_scores
from cliptrase.method.pamr import pamr
from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.method.zoo import build_method
from cliptrase.models.clip import load_clip
from cliptrase.protocols.paper import dbscan_settings
from cliptrase.registry import MODELS
from cliptrase.utils.device import resolve_device
from cliptrase.utils.profiling import stage

logger = logging.getLogger(__name__)


_Schema = TypeVar("_Schema", MethodConfig, ProtocolConfig)


def structured(schema: type[_Schema], value: _Schema | Mapping[str, Any]) -> _Schema:
    """``value`` as the validated dataclass ``schema`` (a mapping is merged onto the schema's defaults).

    The harness passes the objects :func:`cliptrase.config.validate` returned; mmseg-style dict configs
    (``MODELS.build``, tests) pass mappings, which get the same type checks here.
    """
    if isinstance(value, schema):
        return value
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), dict(value)))


def method_options(
    method: MethodConfig | Mapping[str, Any],
    *,
    size: int,
    is_paper: bool,
    n_foreground: int | None = None,
    cls_product: bool = False,
    patch: int = 16,
) -> CLIPtraseOptions:
    """Post-processing options of a method config for inputs (or windows) of side ``size``.

    The nulls of :class:`MethodConfig` are resolved here, where the input is known: eps / min_samples take
    the authors' values for ``size`` (:func:`~cliptrase.protocols.paper.dbscan_settings`); vote is
    ``majority`` in the paper protocol and ``mean_logits`` in sliding windows; ``cls_product`` follows the
    dataset. Without clustering eps / min_samples are unused (set to 1).
    """
    m = structured(MethodConfig, method)
    eps, min_samples = m.eps, m.min_samples
    if m.cluster and (eps is None or min_samples is None):
        d_eps, d_min = dbscan_settings(size, size // patch)
        eps = d_eps if eps is None else eps
        min_samples = d_min if min_samples is None else min_samples
    return CLIPtraseOptions(
        eps=1.0 if eps is None else eps,
        min_samples=1 if min_samples is None else min_samples,
        n_foreground=n_foreground if is_paper else None,
        cls_product=cls_product if m.cls_product is None else m.cls_product,
        denoise=m.denoise,
        cluster=m.cluster,
        vote=m.vote or ("majority" if is_paper else "mean_logits"),
        upsample_ratio=m.upsample_ratio,
        median_size=m.median_size,
        dbscan=m.dbscan,
        correlation_block=m.correlation_block,
        correlation=m.correlation,
    )


@MODELS.register_module()
class ClipSegDataPreProcessor(BaseDataPreprocessor):
    """``x / 255`` then ``(x - mean) / std`` in RGB — the exact arithmetic of torchvision's ``ToTensor`` +
    ``Normalize`` that the authors use (mmseg's ``SegDataPreProcessor`` computes ``(x - 255 mean) / (255
    std)``, which differs in the last bits; ``unit_scale=False`` computes that instead, for a preset whose
    peer runs it: ``protocol.pixel_mean`` / ``pixel_std``). Images of different sizes are returned as a list.

    Args:
        mean: RGB mean on the 0..1 scale (0..255 with ``unit_scale=False``).
        std: RGB std on the same scale.
        bgr_to_rgb: flip channels (mmcv loads BGR).
        unit_scale: divide by 255 before normalising.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], bgr_to_rgb: bool = True, unit_scale: bool = True
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.bgr_to_rgb = bgr_to_rgb
        self.unit_scale = unit_scale

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:
        with stage("data"):
            data = self.cast_data(data)
            images = []
            for img in data["inputs"]:
                x = img.flip(0) if self.bgr_to_rgb else img  # flip: a copy
                x = x.to(torch.float32, copy=x is img)  # in place from here: never the caller's tensor
                if self.unit_scale:
                    x.div_(255)
                images.append(x.sub_(self.mean).div_(self.std))
        same = all(x.shape == images[0].shape for x in images)
        return {"inputs": torch.stack(images) if same else images, "data_samples": data.get("data_samples")}


@MODELS.register_module()
class CLIPtraseSegmentor(BaseSegmentor):
    """Training-free dense CLIP segmentor: any registered method (``method.type``) under either protocol.

    Args:
        model: ``{name, pretrained, weights}`` of the backbone.
        method: the validated :class:`MethodConfig` (or a mapping of its fields).
        protocol: the validated :class:`ProtocolConfig` (or a mapping of its fields); its settings for
            ``dataset_name`` are resolved once, before the model loads.
        prompts: text queries, in classifier order.
        prompt_to_class: class index of every prompt (synonyms and background prompts share one).
        n_classes: number of scored classes.
        n_foreground: paper protocol: prompts >= this collapse to it (background); None otherwise.
        cls_product: multiply by the [CLS] logits (the authors' VOC20 rule).
        dataset_name: the benchmark, for the protocol's per-dataset settings.
        device: ``auto``, ``cpu`` or ``cuda``.
        window_batch: windows per forward pass in slide mode.
        precision: image-tower precision, ``fp32`` (exact), ``bf16`` or ``fp16``.
        compile: ``torch.compile`` the unmodified leading blocks of the image tower.
    """

    def __init__(
        self,
        model: dict,
        method: MethodConfig | Mapping[str, Any],
        protocol: ProtocolConfig | Mapping[str, Any],
        prompts: Sequence[str],
        prompt_to_class: Sequence[int],
        n_classes: int,
        n_foreground: int | None = None,
        cls_product: bool = False,
        dataset_name: str = "",
        device: str = "auto",
        window_batch: int = 16,
        precision: str = "fp32",
        compile: bool = False,
        data_preprocessor: dict | None = None,
    ) -> None:
        self.method_cfg = structured(MethodConfig, method)
        self.settings: DatasetProtocol = structured(ProtocolConfig, protocol).for_dataset(dataset_name)
        self.is_paper = self.settings.kind == "paper"
        device_t = resolve_device(device)
        clip = load_clip(
            model.get("name"),
            model.get("pretrained"),
            weights=model.get("weights"),
            device=device_t,
            cache_dir=model.get("cache_dir"),
            quick_gelu=model.get("quick_gelu"),
        )
        self.model_info = clip.describe()
        if data_preprocessor is None and self.settings.pixel_mean is not None:  # the peer's mmseg arithmetic
            data_preprocessor = ClipSegDataPreProcessor(
                self.settings.pixel_mean, self.settings.pixel_std, unit_scale=False
            )
        super().__init__(data_preprocessor=data_preprocessor or ClipSegDataPreProcessor(clip.mean, clip.std))
        self.align_corners = False
        # a submodule: .to(device) and eval() reach the models a method holds
        self.method = build_method(self.method_cfg, dataset_name)
        self.predictor = Predictor(
            clip,
            method=self.method,
            pos_offset=self.settings.pos_offset,
            precision=precision,
            compile=compile,
        )
        self.clip_model = clip.model  # registered as a submodule so .to(device) and eval() reach it
        self.prompts = list(prompts)
        self.register_buffer("prompt_to_class", torch.tensor(list(prompt_to_class)), persistent=False)
        self.n_classes = n_classes
        self.window_batch = window_batch
        self.dataset_name = dataset_name
        # the side the size-dependent method defaults see: the window, or the short side of whole images
        size = self.settings.image_size if self.is_paper else self.settings.crop or self.settings.short_side
        self.options = method_options(
            self.method_cfg,
            size=size,
            is_paper=self.is_paper,
            n_foreground=n_foreground,
            cls_product=cls_product,
            patch=self.predictor.encoder.patch_size[0],
        )
        self.text = self.predictor.text_classifier(self.prompts)
        self.to(device_t)

    # -- inference -------------------------------------------------------------------------------------
    def predict(self, inputs: Tensor | list[Tensor], data_samples: list | None = None) -> list:
        """Predict label maps for a batch and attach them to the data samples as ``pred_sem_seg``."""
        with torch.no_grad():
            if self.is_paper:
                labels = self._predict_paper(inputs)
            else:
                labels = self._predict_standard(list(inputs), [s.metainfo["ori_shape"] for s in data_samples])
        for label, sample in zip(labels, data_samples):
            sample.set_data({"pred_sem_seg": PixelData(data=label[None])})
        return data_samples

    def _predict_paper(self, inputs: Tensor | list[Tensor]) -> list[Tensor]:
        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        out = self.predictor(inputs, self.text, self.options)
        return list(self.prompt_to_class[out.pred])

    def window_scores(self, crops: Tensor) -> Tensor:
        """Per-prompt cosine scores of a batch of windows (n, P, h, w), voted inside each window (the dense
        form of :meth:`window_outputs`)."""
        outs = self.window_outputs(crops)
        return torch.stack([o.dense() if isinstance(o, RegionScores) else o for o in outs])

    def window_outputs(self, crops: Tensor) -> list[Tensor | RegionScores]:
        """Per-prompt cosine scores of each window of a batch, voted inside each window: (P, h, w) maps, or
        :class:`RegionScores` (the K region rows and the region map) where CLIPtrase voted.

        Windows are fitted as the protocol's peer does (:func:`~cliptrase.inference.sliding.fit_to_patches`):
        padded to multiples of ``protocol.pad_to`` (logits cropped back), the patch grid floored (logits
        stretched over the window).
        """
        patch = self.predictor.encoder.patch_size[0]
        fitted, out_hw, box = fit_to_patches(crops, patch, self.settings.pad_to)
        window = fit_to_patches(crops, 1, self.settings.pad_to)[0]  # padded, grid not floored
        feats = self.predictor.encode(fitted, self.text, window=window)
        out = self.predictor.segment(feats, self.text, self.options, out_hw)
        scale = self.predictor.logit_scale
        if self.options.cluster and self.options.vote == "majority":  # one-hot rows of the voted labels
            one_hot = torch.eye(len(self.prompts), device=out.pred.device)
            outs = [RegionScores(one_hot, pred) for pred in out.pred]
        elif out.region_logits is not None:  # mean_logits: the region means / scale, as the maps' values
            tables = out.region_logits / scale
            # the full-size logits are formed (on this read) only if a window of the batch has no cluster
            raw = None if bool(out.clustered.all()) else out.raw_logits
            outs = [
                RegionScores(table, regions) if clustered else raw[i].div_(scale)
                for i, (table, regions, clustered) in enumerate(zip(tables, out.regions, out.clustered))
            ]
        else:  # in place: these logits are this call's own
            outs = list(out.logits.div_(scale))
        if box:
            y1, y2, x1, x2 = box
            outs = [
                o.crop(y1, y2, x1, x2) if isinstance(o, RegionScores) else o[..., y1:y2, x1:x2] for o in outs
            ]
        return outs

    def _predict_standard(self, images: list[Tensor], ori_shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Windows of every image of the batch encoded together, then per-image scoring."""
        crop, stride = self.settings.crop, self.settings.stride
        if crop:
            scores = sliding_window_list(
                self.window_outputs,
                images,
                crop=crop,
                stride=stride,
                max_batch=self.window_batch,
                keep_regions=True,
            )
        else:
            scores = [self.window_outputs(x[None])[0] for x in images]
        with stage("post-processing"):
            return [self._score(s, x, shape) for s, x, shape in zip(scores, images, ori_shapes)]

    def _score(self, scores: StitchedScores, image: Tensor, ori_shape: tuple[int, int]) -> Tensor:
        """(P, h, w) prompt scores -> labels at the GT size: upsample, PAMR, softmax, synonyms, thresholds."""
        # prompt-major (P, h, w) before upsampling: the full-resolution reductions over prompts below
        # (synonym max, logsumexp) are fast on planes and ~40x slower on pixel-major data on CPU, and the
        # copy is cheapest at window resolution
        p = self.settings
        if not p.pamr_steps:  # never all prompt maps at full size (same labels as below)
            args = (self.prompt_to_class, self.n_classes, p.logit_scale, p.prob_thd, p.area_thd)
            return stitched_labels(scores, tuple(ori_shape), *args)
        batch = dense_scores(scores).contiguous()[None]
        scores = F.interpolate(batch, size=tuple(ori_shape), mode="bilinear", align_corners=False)
        if p.pamr_steps:
            rgb = F.interpolate(image[None], size=tuple(ori_shape), mode="bilinear", align_corners=False)
            scores = pamr(rgb, scores, steps=p.pamr_steps, dilations=p.pamr_dilations)
        return scores_to_labels(
            scores[0], self.prompt_to_class, self.n_classes, p.logit_scale, p.prob_thd, area_thd=p.area_thd
        )

    # -- BaseSegmentor's abstract training API: this segmentor is training-free ------------------------------
    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        """Not available: the method is training-free."""
        raise NotImplementedError("CLIPtraseSegmentor is training-free: there is no loss")

    def _forward(self, inputs: Tensor, data_samples: list | None = None) -> Tensor:
        """Per-prompt window scores of a batch (tensor mode)."""
        return self.window_scores(inputs)

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Normalised dense tokens of the (modified) tower."""
        return self.predictor.encode(inputs, self.text).tokens

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Per-prompt scores at the input size (whole-image inference)."""
        return self.window_scores(inputs)
