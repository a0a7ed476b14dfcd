"""The method interface: what a training-free dense method reads from the CLIP tower and what it returns.

A method is one module under ``cliptrase/method/`` and one config under ``configs/method/`` (docs/method.md
"Adding a method"). Its class, registered in :data:`METHODS` under the name the config's ``type`` gives:

- declares what it needs from the tower (:meth:`DenseMethod.request`: hidden states and q/k/v of any blocks,
  relative to depth, and the first block it runs itself); the tower computes only that, once
  (:meth:`cliptrase.models.dense.DenseEncoder.run`);
- turns that into dense features (:meth:`DenseMethod.features`): it may run any block again with any
  attention rule (:meth:`~cliptrase.models.dense.DenseEncoder.run_block`), as often as it likes, use the
  text classifier (a first prediction fed back), hold models of its own (it is an ``nn.Module``), and
  returns projected, L2-normalised tokens;
- labels them (:meth:`DenseMethod.segment`): by default the patch logits bilinear to the output and their
  argmax; CLIPtrase overrides it with clustering and the vote.

An optional post-step of the protocol (PAMR) stays a protocol switch and never enters a method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

from torch import Tensor, nn

from cliptrase.method.labels import SegmentOutput, label_patches
from cliptrase.models.dense import DenseEncoder, DenseFeatures, LastBlockSpec, TowerRequest, TowerState
from cliptrase.utils.name_registry import Registry

METHODS: Registry[type[DenseMethod]] = Registry("method type")
"""Method classes by the name a method config's ``type`` gives (the built-ins are imported by
:mod:`cliptrase.method.zoo`)."""


@dataclass(frozen=True)
class NoOptions:
    """Options of a method without knobs of its own (``method.params`` must be empty)."""


@dataclass(frozen=True)
class MethodContext:
    """What a method may use besides the tower, for one batch.

    Attributes:
        images: (B, 3, H, W) the normalised input the tower sees (CLIP mean / std).
        text: (P, E) L2-normalised classifier rows (one per prompt), or None where no classifier is known
            (feature extraction alone).
        logit_scale: CLIP's ``logit_scale.exp()``.
        mean: CLIP's RGB mean (0..1 scale), to undo the normalisation.
        std: CLIP's RGB std (0..1 scale).
        window: (B, 3, H', W') the whole window before its patch grid was floored (padded where the
            protocol pads): ``images`` is its top-left ``h·p × w·p`` part. None: ``images`` itself. For
            methods that work on the window's pixels (ResCLIP's first prediction and its PAMR).
    """

    images: Tensor
    text: Tensor | None
    logit_scale: float
    mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    window: Tensor | None = None


def last_block_of(cfg: Any) -> LastBlockSpec:
    """The :class:`LastBlockSpec` of a method config (its ``attention``, ``keep_residual``, ``keep_ffn``,
    ``attention_params``)."""
    return LastBlockSpec(
        attention=cfg.attention,
        keep_residual=cfg.keep_residual,
        keep_ffn=cfg.keep_ffn,
        params=tuple(dict(cfg.attention_params).items()),
    )


BY_DATASET = "by_dataset"
"""Key of ``method.params`` holding per-dataset knob values: ``{by_dataset: {voc21: {knob: value}}}``."""


def method_options(
    options_type: type, params: Mapping[str, Any], method_type: str, dataset: str | None = None
) -> Any:
    """``options_type(**params)`` for ``dataset``: ``params[by_dataset][dataset]`` replaces the general values
    (a method's own per-dataset settings, e.g. ResCLIP's ``temp_thd``); every key is checked, also the
    per-dataset ones of other datasets.

    Raises:
        ValueError: an unknown or ill-typed key, naming it, the method type and the valid keys.
    """
    params = dict(params)
    per_dataset = dict(params.pop(BY_DATASET, None) or {})
    fields = {f.name for f in dataclasses.fields(options_type)}
    valid = ", ".join(sorted(fields)) or "none"
    for where, values in [("", params), *((f"{BY_DATASET}.{d}.", dict(v)) for d, v in per_dataset.items())]:
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(
                f"method.params.{where}{unknown[0]} is not a knob of method type {method_type}; "
                f"valid: {valid}"
            )
    if dataset is not None:
        params.update(per_dataset.get(dataset, {}))
    try:
        return options_type(**params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"method.params of method type {method_type}: {err}") from None


class DenseMethod(nn.Module):
    """Base of every method: the vanilla tower, the last block as the config's rule, plain argmax labels.

    Subclasses override :meth:`request` and :meth:`features` (and :meth:`segment` where the labelling
    differs), and set :attr:`Options` to a frozen dataclass of their own knobs (read from ``method.params``).

    Args:
        cfg: the validated method config (``cliptrase.config.MethodConfig``, or any object with its fields).
        dataset: the benchmark, for the knobs ``method.params.by_dataset`` sets per dataset (None: the
            general values).
    """

    Options: ClassVar[type] = NoOptions
    default_last_block: ClassVar[LastBlockSpec] = LastBlockSpec()

    def __init__(self, cfg: Any, dataset: str | None = None) -> None:
        super().__init__()
        self.name: str = cfg.name
        self.dataset = dataset
        self.last_block = last_block_of(cfg)
        params = getattr(cfg, "params", {}) or {}
        self.options = method_options(self.Options, params, type(self).__name__, dataset)

    @classmethod
    def from_fields(
        cls,
        last_block: LastBlockSpec | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        dataset: str | None = None,
        **fields: Any,
    ) -> DenseMethod:
        """The method from plain values instead of a config (library use, tests): ``last_block`` (default:
        the class's :attr:`default_last_block`), ``params`` (the knobs), other config fields by keyword."""
        spec = last_block or cls.default_last_block
        cfg = SimpleNamespace(
            name=fields.pop("name", cls.__name__.lower()),
            attention=spec.attention,
            keep_residual=spec.keep_residual,
            keep_ffn=spec.keep_ffn,
            attention_params=dict(spec.params),
            params=dict(params or {}),
            **fields,
        )
        return cls(cfg, dataset)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Raise ``ValueError`` (one line naming the key) where ``cfg`` does not suit this class; called when
        the job is composed, before any model loads. Checks ``method.params`` against :attr:`Options`."""
        method_options(cls.Options, getattr(cfg, "params", {}) or {}, cls.__name__)
        if getattr(cfg, "cluster", False):
            raise ValueError(
                f"method.cluster=true needs method.type=CLIPtrase (this method is {cls.__name__})"
            )

    def request(self, depth: int) -> TowerRequest:
        """What the tower computes before :meth:`features` takes over (default: all but the last block)."""
        return TowerRequest()

    def features(self, tower: DenseEncoder, state: TowerState, ctx: MethodContext) -> DenseFeatures:
        """Dense, L2-normalised tokens from the tower's state (default: the last block, config's rule)."""
        x, _ = tower.run_block(-1, state.x, self.last_block, state.grid_hw)
        return DenseFeatures(tokens=tower.head(x), grid_hw=state.grid_hw, qkv=dict(state.qkv))

    def encode(self, tower: DenseEncoder, ctx: MethodContext) -> DenseFeatures:
        """The tower run as :meth:`request` says, then :meth:`features`."""
        return self.features(tower, tower.run(ctx.images, self.request(tower.depth)), ctx)

    def segment(
        self, features: DenseFeatures, text: Tensor, logit_scale: float, out_hw: tuple[int, int], opts: Any
    ) -> SegmentOutput:
        """Labels of the features at ``out_hw``: patch logits, bilinear, [CLS] product where the dataset asks,
        argmax, background collapse (:func:`~cliptrase.method.labels.label_patches`). ``opts`` carries
        ``n_foreground`` and ``cls_product``."""
        return label_patches(
            features, text, logit_scale, out_hw, n_foreground=opts.n_foreground, cls_product=opts.cls_product
        )


@METHODS.register("LastBlockRule")
class LastBlockRule(DenseMethod):
    """The methods that only replace the last block's attention (vanilla CLIP, MaskCLIP, SCLIP, ClearCLIP,
    NACLIP): the rule named by ``method.attention``, residual and FFN as the config says."""
