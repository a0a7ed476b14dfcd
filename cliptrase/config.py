"""Typed schemas of the Hydra config groups, stored in Hydra's ConfigStore.

Each group file starts with ``defaults: [base_<group>, _self_]`` (dataset files are validated the same way
by :func:`validate`), so a misspelt key or a wrong type fails when the config is composed, before any
model or dataset is loaded. Cross-field rules live in :func:`validate`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from cliptrase.errors import ConfigError
from cliptrase.utils.class_names import VOCABS

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
"""Values of ``precision``: fp32 is exact; bf16/fp16 autocast the image tower (null: the protocol's
``published_precision`` on CUDA, fp32 elsewhere; resolved when the job starts)."""
PROTOCOL_KINDS: tuple[str, ...] = ("paper", "standard")
METRICS: tuple[str, ...] = ("paper_scores", "mmseg_iou")
DATASET_VOCABS: tuple[str, ...] = ("paper", "standard")
"""Vocabularies every dataset config is checked against (its ``paper_key`` and ``standard_vocab`` files)."""
VOTES: tuple[str | None, ...] = (None, "majority", "mean_logits")
DBSCAN_BACKENDS: tuple[str, ...] = ("torch", "sklearn")
CORRELATIONS: tuple[str, ...] = ("qkv_cosine", "attention")
GROUPS: tuple[str, ...] = ("model", "dataset", "protocol", "method")
TOP_LEVEL_KEYS: frozenset[str] = frozenset(
    {
        *GROUPS, "paths", "hydra", "local", "experiment_name", "device", "precision", "compile", "threads",
        "batch_size", "window_batch", "num_workers", "max_images", "save_predictions", "seed", "results",
        "allow_invalid_labels",
    }
)  # fmt: skip
"""Keys of the composed eval config (``configs/eval.yaml`` and its groups; ``local`` is a machine's own)."""
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class ModelConfig:
    """Backbone: an open_clip name + pretrained tag, or a local OpenAI-format weights file.

    Attributes:
        slug: short name used in run folders and table rows (``vit_b16_openai``).
        name: open_clip architecture (``ViT-B-16``). With ``weights``: the architecture of an open_clip
            checkpoint; null for an OpenAI-format file (architecture read from its tensors).
        pretrained: open_clip pretrained tag (``openai``) or ``random``.
        weights: path of a local checkpoint (OpenAI TorchScript archive, state dict, safetensors), or null.
        quick_gelu: MLP activation override; null = as the weights were trained (the tag's pretrained config,
            else the architecture config, QuickGELU for OpenAI-format files). Contradicting a tag is refused.
        cache_dir: open_clip's download cache (null: open_clip's default, ``~/.cache/huggingface/hub`` and
            ``~/.cache/clip``); ``cliptrase models fetch`` fills it ahead of time.
    """

    slug: str = "???"
    name: str | None = None
    pretrained: str | None = None
    weights: str | None = None
    quick_gelu: bool | None = None
    cache_dir: str | None = None


@dataclass
class DatasetConfig:
    """Dataset facts only (see ``configs/dataset/*.yaml`` and ``cliptrase.datasets``)."""

    name: str = "???"
    type: str = "???"
    data_root: str | None = None
    img_dir: str = ""
    ann_dir: str = ""
    split: str | None = None
    num_classes: int = 0
    has_background: bool = False
    paper_key: str | None = None
    standard_vocab: str | None = None
    expected_val_images: int | None = None
    img_suffix: str | None = None
    seg_map_suffix: str | None = None


@dataclass(frozen=True)
class DatasetProtocol:
    """The settings of one protocol for one dataset, resolved once by :meth:`ProtocolConfig.for_dataset`.

    Attributes mirror :class:`ProtocolConfig` with every ``*_by_dataset`` exception applied; ``crop`` 0
    means whole-image inference.
    """

    name: str
    kind: str
    image_size: int | None
    short_side: int | None
    crop: int
    stride: int
    logit_scale: float
    prob_thd: float
    area_thd: float | None
    pamr_steps: int
    pamr_dilations: tuple[int, ...]
    pos_offset: float | None
    pad_to: int
    metric: str
    vocab: str
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None


_PER_DATASET = ("short_side", "crop", "stride", "logit_scale", "prob_thd", "area_thd")
"""Settings with a ``<name>_by_dataset`` exception dict."""


@dataclass
class ProtocolConfig:
    """The full evaluation recipe: ``paper224``/``paper336`` (the authors'), ``standard`` (uniform mmseg
    protocol) or a peer preset (``sclip``, ``naclip``, ``clearclip``, ``proxyclip``: that peer's released
    evaluation pipeline, docs/presets.md).

    Each preset file is complete (``defaults: [base_protocol, _self_]``, no parent preset), so its
    ``*_by_dataset`` dicts are exactly what it states: a parent's exceptions can never leak into it.
    Read the settings of one dataset through :meth:`for_dataset`, never the dicts directly.

    Attributes:
        name: protocol name (results field, table rows).
        kind: ``paper`` (the authors' script) or ``standard`` (the mmseg sliding-window family).
        image_size: paper protocol: resize short side + centre crop to S, GT cropped the same way.
        short_side: standard protocol: resize so the short side is this (long side <= 2048).
        short_side_by_dataset: per-dataset exceptions (standard: Cityscapes 560, PC-459/ADE-847 448).
        crop: standard protocol sliding-window size (0 = whole image).
        stride: sliding-window stride.
        crop_by_dataset: per-dataset window sizes (e.g. NACLIP's whole-image VOC: 0).
        stride_by_dataset: per-dataset strides.
        pamr_steps: PAMR refinement steps on the upsampled scores (0 = off; NACLIP uses 10).
        pamr_dilations: PAMR neighbourhood dilations (NACLIP's ``pamr_stride=(8, 16)``).
        logit_scale: standard scoring temperature: softmax(logit_scale * cos).
        logit_scale_by_dataset: per-dataset temperatures (SCLIP: 65 on VOC21, 50 on PC60 / Object).
        prob_thd: pixels whose max probability is below it become class 0 (background sets only).
        prob_thd_by_dataset: per-dataset thresholds (docs/protocols.md §7: 0.1 on VOC21, PC60, Object).
        area_thd: SCLIP's post-process: a foreground class predicted on at most this fraction of the
            predicted foreground pixels is suppressed (its pixels take the next class); null = off.
        area_thd_by_dataset: per-dataset area thresholds (SCLIP: 0.1 on VOC21).
        pad_to: 0, or zero-pad each window (or whole image), centred, to multiples of N and crop the logits
            back (ClearCLIP 16, ProxyCLIP 56). Then the patch grid is floored and the logits stretched over
            the (padded) window, as every peer's patch convolution does (SCLIP, NACLIP: no padding).
        metric: ``paper_scores`` or ``mmseg_iou``.
        vocab: class-name set (``cliptrase.utils.class_names.VOCABS``): ``paper``, ``standard`` (= the
            SCLIP/NACLIP files), ``clearclip`` or ``proxyclip``.
        pos_offset: positional-table resize: ``scale_factor = (g + offset) / g0`` bicubic (0.1: the
            authors', SCLIP, NACLIP, ClearCLIP, ProxyCLIP); null = resize to the grid size.
        pixel_mean: null (default): images are scaled to 0..1, then normalised with the model's mean / std
            (the authors' ``ToTensor`` + ``Normalize``); or the RGB mean in 0..255 units of an mmseg
            ``SegDataPreProcessor`` as a peer's code writes it, applied as ``(x - mean) / std`` on the 0..255
            pixels — mmseg's arithmetic, which differs from the 0..1 one in the last bits (ProxyCLIP's
            ``[122.771, 116.746, 104.094]``). Set together with ``pixel_std``.
        pixel_std: the RGB std in 0..255 units with ``pixel_mean`` (ProxyCLIP's ``[68.501, 66.632, 70.323]``).
        published_precision: the precision the peer's published numbers were computed in (``fp16``: OpenAI's
            ``clip.load`` converts the model to fp16 on CUDA, open_clip-based peers ask for it). With
            ``precision: null`` (the default) a job on CUDA runs in it, a job on CPU in fp32; an explicit
            ``precision=`` wins. It changes no number by itself (the resolved ``precision`` is hashed).
        sources: provenance of the settings: ``<setting>`` or ``<setting>.<dataset>`` -> the peer's file
            and line (rendered into docs/presets.md by scripts/settings_table.py).
    """

    name: str = "???"
    kind: str = "???"
    image_size: int | None = None
    short_side: int | None = None
    short_side_by_dataset: dict[str, int] = field(default_factory=dict)
    crop: int = 224
    stride: int = 112
    crop_by_dataset: dict[str, int] = field(default_factory=dict)
    stride_by_dataset: dict[str, int] = field(default_factory=dict)
    pamr_steps: int = 0
    pamr_dilations: list[int] = field(default_factory=lambda: [8, 16])
    logit_scale: float = 40.0
    logit_scale_by_dataset: dict[str, float] = field(default_factory=dict)
    prob_thd: float = 0.0
    prob_thd_by_dataset: dict[str, float] = field(default_factory=dict)
    area_thd: float | None = None
    area_thd_by_dataset: dict[str, float] = field(default_factory=dict)
    pad_to: int = 0
    metric: str = "???"
    vocab: str = "???"
    pos_offset: float | None = None
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    published_precision: str = "fp32"
    sources: dict[str, str] = field(default_factory=dict)

    def for_dataset(self, dataset: str) -> DatasetProtocol:
        """The settings for ``dataset``: each ``<name>_by_dataset`` entry replaces ``<name>``.

        Raises:
            ValueError: a resolved setting out of range (names the key, the value and the fix).
        """
        picked = {
            key: getattr(self, f"{key}_by_dataset").get(dataset, getattr(self, key)) for key in _PER_DATASET
        }
        resolved = DatasetProtocol(
            name=self.name,
            kind=self.kind,
            image_size=self.image_size,
            pamr_steps=self.pamr_steps,
            pamr_dilations=tuple(int(d) for d in self.pamr_dilations),
            pos_offset=self.pos_offset,
            pad_to=self.pad_to,
            metric=self.metric,
            vocab=self.vocab,
            pixel_mean=None if self.pixel_mean is None else tuple(float(v) for v in self.pixel_mean),
            pixel_std=None if self.pixel_std is None else tuple(float(v) for v in self.pixel_std),
            **picked,
        )
        _check_resolved(resolved, dataset)
        return resolved


def _check_resolved(p: DatasetProtocol, dataset: str) -> None:
    """Range checks of one dataset's settings (``protocol.<key>`` named in the error)."""
    where = f"protocol {p.name!r} on {dataset!r}"
    if p.crop < 0 or p.stride <= 0 or (p.crop and p.stride > p.crop):
        raise ValueError(
            f"{where}: protocol.crop/stride need crop >= 0 and 0 < stride <= crop, got {p.crop}/{p.stride}"
        )
    if p.area_thd is not None and not 0 <= p.area_thd < 1:
        raise ValueError(f"{where}: protocol.area_thd must be in [0, 1) or null, got {p.area_thd}")
    if not 0 <= p.prob_thd <= 1:
        raise ValueError(f"{where}: protocol.prob_thd must be in [0, 1], got {p.prob_thd}")
    if p.pad_to < 0:
        raise ValueError(f"{where}: protocol.pad_to must be 0 (floor the patch grid) or > 0, got {p.pad_to}")
    if (
        (p.pixel_mean is None) != (p.pixel_std is None)
        or any(v is not None and len(v) != 3 for v in (p.pixel_mean, p.pixel_std))
        or (p.pixel_std is not None and min(p.pixel_std) <= 0)
    ):
        raise ValueError(
            f"{where}: protocol.pixel_mean and protocol.pixel_std are both null or both 3 RGB values in "
            f"0..255 units (std > 0), got {p.pixel_mean} / {p.pixel_std}"
        )
    if p.pamr_steps < 0 or not p.pamr_dilations or min(p.pamr_dilations) < 1:
        raise ValueError(
            f"{where}: protocol.pamr_steps must be >= 0 and pamr_dilations positive, got "
            f"{p.pamr_steps}, {list(p.pamr_dilations)}"
        )


@dataclass
class MethodConfig:
    """The method and its switches (CLIPtrase defaults = the authors').

    Attributes:
        name: method label (``cliptrase``, ``clip``, ``sclip``, ...), = the config file stem.
        type: the method class: a name registered in ``cliptrase.method.zoo.METHODS`` (``LastBlockRule``,
            ``CLIPtrase``, ...) or ``package.module.ClassName`` of a user's own ``DenseMethod`` subclass.
        params: the knobs of the method class (its ``Options`` dataclass); empty for the last-block methods
            and CLIPtrase, whose switches are the fields below.
        attention: last-block attention rule, a key of ``cliptrase.models.attention.ATTENTION``.
        keep_residual: keep the last block's residual connection.
        keep_ffn: keep the last block's MLP.
        attention_params: extra keyword arguments of the rule (e.g. NACLIP ``gaussian_std``).
        cluster: cluster and vote (CLIPtrase); false = per-pixel argmax.
        denoise: subtract the [CLS] row before clustering.
        vote: ``majority`` or ``mean_logits``; null = the protocol's default (paper: majority, standard:
            mean_logits, so sliding windows can be averaged).
        eps: DBSCAN eps; null = the authors' value for the input size (0.7 at 224, 1.1 at 336).
        min_samples: DBSCAN min_samples; null = the authors' value (3 / 7).
        upsample_ratio: cluster-mask upsampling before the median filter.
        median_size: median filter side.
        dbscan: ``torch`` or ``sklearn``.
        correlation_block: block whose q/k/v give the correlation, relative to depth.
        correlation: ``qkv_cosine`` (the authors') or ``attention`` (ablation: plain attention map).
        cls_product: multiply by the [CLS] logits: null = as the authors (VOC20 in the paper protocol).
    """

    name: str = "???"
    type: str = "LastBlockRule"
    params: dict[str, Any] = field(default_factory=dict)
    attention: str = "vanilla"
    keep_residual: bool = True
    keep_ffn: bool = True
    attention_params: dict[str, float] = field(default_factory=dict)
    cluster: bool = False
    denoise: bool = True
    vote: str | None = None
    eps: float | None = None
    min_samples: int | None = None
    upsample_ratio: int = 4
    median_size: int = 7
    dbscan: str = "torch"
    correlation_block: int = -2
    correlation: str = "qkv_cosine"
    cls_product: bool | None = None


def register_configs() -> None:
    """Store the schemas as ``base_<group>`` in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="protocol", name="base_protocol", node=ProtocolConfig)
    cs.store(group="method", name="base_method", node=MethodConfig)


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check the composed config against the schemas and cross-field rules; return typed group objects.

    Runs before any model or data is loaded: every knob, every group and the dataset's vocabulary are
    checked here, so a typo costs seconds, not a model download.

    Raises:
        ConfigError: one line naming the key, the value found and the valid values.
    """
    _check_keys(cfg)
    _check_knobs(cfg)
    out: dict[str, Any] = {}
    for group, schema in (
        ("model", ModelConfig),
        ("dataset", DatasetConfig),
        ("protocol", ProtocolConfig),
        ("method", MethodConfig),
    ):
        try:
            node = OmegaConf.to_container(cfg[group], resolve=True)  # resolve against the whole config
            merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        except Exception as exc:  # omegaconf raises several types; all are user errors here
            raise ConfigError(f"config group {group!r}: {str(exc).splitlines()[0]}") from None
        out[group] = OmegaConf.to_object(merged)
    model, protocol, method = out["model"], out["protocol"], out["method"]
    if model.weights is None and model.name is None:
        raise ConfigError("model: set model.name (open_clip name) or model.weights (state-dict file)")
    _check_model(model)
    _check_protocol(protocol, out["dataset"].name)
    _check_method(method)
    check_dataset_config(out["dataset"], vocabs=(*DATASET_VOCABS, protocol.vocab))
    return out


def _check_model(model: ModelConfig) -> None:
    """Name, tag and activation against open_clip's tables (no weights are read or downloaded)."""
    if model.name is None:
        return
    from cliptrase.models.clip import RANDOM, check_model_name, check_pretrained_tag, resolve_quick_gelu

    check_model_name(model.name)
    tag = None if model.pretrained in (None, RANDOM) else model.pretrained
    if tag is not None:
        check_pretrained_tag(model.name, tag)
    resolve_quick_gelu(model.name, tag, model.quick_gelu)


def _fail(key: str, value: Any, valid: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid; valid: {valid}")


def _choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        _fail(key, value, ", ".join("null" if c is None else str(c) for c in choices))


def _integer(key: str, value: Any, *, low: int, nullable: bool = False) -> None:
    """``value`` is an int >= ``low`` (or None when ``nullable``); bools and strings are refused."""
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(key, value, f"an integer >= {low}" + (" or null" if nullable else ""))


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(key, value, "true, false")


def _check_keys(cfg: DictConfig) -> None:
    """Refuse top-level keys the eval config does not define (``+max_imgs=3`` would otherwise do nothing)."""
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    missing = sorted(k for k in GROUPS if k not in cfg)
    if missing:
        raise ConfigError(f"config group(s) {', '.join(missing)} missing; select one, e.g. dataset=demo")


def _check_knobs(cfg: DictConfig) -> None:
    """The run knobs of ``configs/eval.yaml``: types, ranges and choices."""
    get = cfg.get
    _integer("max_images", get("max_images"), low=1, nullable=True)
    _integer("batch_size", get("batch_size", 1), low=1)
    _integer("window_batch", get("window_batch", 1), low=1)
    _integer("threads", get("threads"), low=1, nullable=True)
    _integer("num_workers", get("num_workers", 0), low=0)
    _integer("save_predictions", get("save_predictions", 0), low=0)
    _integer("seed", get("seed", 0), low=0)
    device = get("device", "auto")
    if not isinstance(device, str) or not _DEVICE.match(device):
        _fail("device", device, "auto, cpu, cuda, cuda:<index>")
    _choice("precision", get("precision"), (None, *PRECISIONS))
    _boolean("compile", get("compile", False))
    _boolean("allow_invalid_labels", get("allow_invalid_labels", False))
    name = get("experiment_name", "default")
    if not isinstance(name, str) or not _EXPERIMENT_NAME.match(name):
        _fail("experiment_name", name, "a folder name of letters, digits, '_', '.', '+', '-'")
    results = get("results") or {}
    for key in sorted(set(results) - {"resume", "overwrite"}):
        _fail(f"results.{key}", results[key], "keys resume, overwrite")
    for key in ("resume", "overwrite"):
        _boolean(f"results.{key}", results.get(key, False))


def _check_protocol(protocol: ProtocolConfig, dataset: str) -> None:
    _choice("protocol.kind", protocol.kind, PROTOCOL_KINDS)
    _choice("protocol.metric", protocol.metric, METRICS)
    _choice("protocol.published_precision", protocol.published_precision, PRECISIONS)
    _choice("protocol.vocab", protocol.vocab, VOCABS)
    if protocol.kind == "paper" and protocol.image_size is None:
        raise ConfigError("protocol.image_size must be set for the paper protocol (224 or 336)")
    _integer("protocol.image_size", protocol.image_size, low=1, nullable=True)
    if protocol.kind == "standard":
        if not protocol.short_side:
            raise ConfigError("protocol.short_side must be set for the standard protocol")
        _integer("protocol.short_side", protocol.short_side, low=1)
    if not protocol.logit_scale > 0:
        _fail("protocol.logit_scale", protocol.logit_scale, "a number > 0")
    try:
        protocol.for_dataset(dataset)  # the per-dataset settings this job will use, range-checked
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_method(method: MethodConfig) -> None:
    from cliptrase.method.zoo import method_class
    from cliptrase.models.attention import ATTENTION

    try:
        cls = method_class(method.type)
    except (KeyError, ImportError, TypeError) as err:
        raise ConfigError(f"method.type: {err.args[0] if err.args else err}") from None
    try:
        cls.check_config(method)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _choice("method.attention", method.attention, tuple(sorted(ATTENTION)))
    _choice("method.vote", method.vote, VOTES)
    _choice("method.dbscan", method.dbscan, DBSCAN_BACKENDS)
    _choice("method.correlation", method.correlation, CORRELATIONS)
    if method.eps is not None and not method.eps > 0:
        raise ConfigError(f"method.eps must be > 0, got {method.eps}; valid: a number > 0 or null")
    _integer("method.min_samples", method.min_samples, low=1, nullable=True)
    _integer("method.upsample_ratio", method.upsample_ratio, low=1)
    if method.median_size < 1 or method.median_size % 2 == 0:
        _fail("method.median_size", method.median_size, "an odd integer >= 1 (the authors': 7)")
    if method.correlation_block >= 0:
        raise ConfigError(
            f"method.correlation_block must be negative (relative to depth), got {method.correlation_block}"
        )


def check_dataset_config(dataset: DatasetConfig, vocabs: Sequence[str] = DATASET_VOCABS) -> None:
    """The dataset config agrees with its dataset class and with both of its vocabularies.

    A config copied from another benchmark keeps that benchmark's ``paper_key``/``standard_vocab``; the
    harness would then prompt and score the other benchmark's classes. Checked here, by the class count
    and background flag of the class, the config and each vocabulary file: the ``paper_key`` and
    ``standard_vocab`` lists always, and the job's ``protocol.vocab`` set.

    Raises:
        ConfigError: unknown dataset type, or a count/background mismatch, naming the config file.
    """
    from cliptrase.datasets.spec import get_dataset_class
    from cliptrase.datasets.vocab import load_vocabulary

    where = f"configs/dataset/{dataset.name}.yaml"
    try:
        cls = get_dataset_class(dataset.type)
    except KeyError as err:
        raise ConfigError(f"dataset.type in {where}: {err.args[0]}") from None
    num_classes = len(cls.METAINFO["classes"])
    if dataset.num_classes != num_classes or dataset.has_background != cls.HAS_BACKGROUND:
        raise ConfigError(
            f"{where} says num_classes={dataset.num_classes}, has_background={dataset.has_background}, but "
            f"{cls.__name__} has {num_classes} classes, has_background={cls.HAS_BACKGROUND}; fix {where}"
        )
    facts = dataclasses.asdict(dataset)
    for protocol in dict.fromkeys(vocabs):
        try:
            load_vocabulary(facts, protocol)
        except (FileNotFoundError, KeyError) as err:
            key = "paper_key" if protocol == "paper" else f"standard_vocab ({protocol} set)"
            raise ConfigError(f"dataset.{key} in {where}: {err}; fix {where}") from None
        except ValueError as err:
            raise ConfigError(str(err)) from None
