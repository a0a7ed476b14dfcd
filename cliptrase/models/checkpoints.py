"""Reading CLIP checkpoints in the formats users already have, without an unrestricted pickle load.

* OpenAI TorchScript archives (``~/.cache/clip/ViT-B-16.pt``, what ``clip.load`` downloads and the authors'
  script loads, docs/method.md §2.1): read with ``torch.jit.load`` on CPU, whose loader rebuilds tensors and
  TorchScript code but never runs arbitrary Python pickles; the state dict is taken from the module, as
  OpenAI's ``clip.load(jit=False)`` does, minus the three non-weight entries of those archives.
* Plain state dicts saved with ``torch.save`` (OpenAI format, or open_clip format ``.pt``/``.bin``, possibly
  wrapped in ``{"state_dict": ...}`` or with DDP's ``module.`` prefix): ``torch.load(weights_only=True)``.
* ``.safetensors`` files (open_clip's hub format): ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from cliptrase.errors import WeightsError, WeightsNotFoundError

TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
"""Entries of OpenAI's TorchScript state dicts that are not weights (OpenAI ``clip.load`` drops them)."""

OPENAI_REQUIRED_KEYS = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "text_projection",
    "positional_embedding",
    "token_embedding.weight",
)
"""Keys every OpenAI-format CLIP ViT state dict has (open_clip's ViT ``CLIP`` uses the same names)."""


class CheckpointError(WeightsError):
    """A weights file that cannot be read, or is not the kind of checkpoint expected."""


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with serialized code, not a ``torch.save`` file)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        what = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(f"weights file {path} holds {what}, not a CLIP state dict")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"weights file {path} is a dict but not a state dict (name -> tensor)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on CPU, whatever its format (see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is unreadable or holds no state dict; the message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path), device="cpu"), path)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"weights file {path} is not a readable safetensors file: {exc}") from None
    if is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a broken archive raises RuntimeError or ValueError
            raise CheckpointError(f"weights file {path} is a damaged TorchScript archive: {exc}") from None
        state = {k: v for k, v in module.state_dict().items() if k not in TORCHSCRIPT_EXTRA_KEYS}
        return _unwrap(state, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        # torch's own text suggests weights_only=False, i.e. running the file's pickle: not for unknown files
        raise CheckpointError(
            f"weights file {path} is not a readable checkpoint ({type(exc).__name__}): expected an OpenAI "
            "TorchScript archive, a torch.save state dict of tensors or a .safetensors file"
        ) from None
    return _unwrap(obj, path)


def require_openai_format(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the missing keys unless ``state`` is an OpenAI-format ViT."""
    missing = [k for k in OPENAI_REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"weights file {path} is not an OpenAI-format CLIP ViT state dict (missing keys: "
            f"{', '.join(missing)}); for an open_clip checkpoint of another architecture also set "
            "model.name=<open_clip name>"
        )
