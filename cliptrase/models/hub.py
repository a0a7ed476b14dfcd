"""Where open_clip keeps pretrained weights, whether they are there, and fetching them ahead of time.

open_clip downloads a tag's weights from the Hugging Face Hub (``hf_hub`` entry of the tag's pretrained
config, preferred when ``huggingface_hub`` is installed) or from a plain URL (``url`` entry, cached as
``<cache_dir or ~/.cache/clip>/<basename>``). On a compute node without internet, a cache miss makes
``huggingface_hub`` retry for tens of seconds before open_clip raises. This module looks in the same
caches first, so that

* a cached tag loads from its local file without any network call, and
* a missing one fails at once with one line naming the model, the cache and ``cliptrase models fetch``.

``HF_HUB_OFFLINE=1`` is honoured: no connection is attempted.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import open_clip

from cliptrase.errors import ConfigError, DownloadError, WeightsNotFoundError

logger = logging.getLogger(__name__)

HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
DEFAULT_URL_CACHE = "~/.cache/clip"
"""open_clip's own default folder for URL downloads (``pretrained.download_pretrained_from_url``)."""

_TRUE = ("1", "true", "yes", "on")


class WeightsUnavailableError(WeightsNotFoundError):
    """Pretrained weights are not cached and cannot be downloaded (offline / hub unreachable)."""


@dataclass(frozen=True)
class TagSource:
    """Where a pretrained tag's weights come from.

    Attributes:
        name: open_clip architecture name.
        tag: pretrained tag.
        hf_repo: Hugging Face repository id, or "" when the tag has none.
        hf_filenames: file names tried in that repository, in open_clip's order (safetensors first).
        url: direct download URL, or "".
        local_file: a ``file`` entry of the pretrained config (a path open_clip uses as is), or "".
    """

    name: str
    tag: str
    hf_repo: str = ""
    hf_filenames: tuple[str, ...] = ()
    url: str = ""
    local_file: str = ""


def tag_source(name: str, tag: str) -> TagSource:
    """The download source of ``name``/``tag`` as open_clip's pretrained table gives it."""
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise ConfigError(f"open_clip has no pretrained tag {tag!r} for {name!r}")
    hub = cfg.get("hf_hub", "") or ""
    repo, filename = os.path.split(hub) if hub else ("", "")
    names: list[str] = []
    if repo:
        filename = filename or HF_WEIGHTS_NAME
        # open_clip tries a safetensors twin first (pretrained._get_safe_alternatives)
        if filename == HF_WEIGHTS_NAME:
            names.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        names.append(filename)
    return TagSource(
        name=name,
        tag=tag,
        hf_repo=repo,
        hf_filenames=tuple(names),
        url=cfg.get("url", "") or "",
        local_file=cfg.get("file", "") or "",
    )


def _hf_available() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def hub_offline() -> bool:
    """True when the user asked the Hugging Face Hub to stay offline (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def url_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder open_clip stores URL downloads in."""
    return Path(os.path.expanduser(str(cache_dir) if cache_dir else DEFAULT_URL_CACHE))


def hf_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The Hugging Face cache open_clip passes ``cache_dir`` to (HF's default when None)."""
    if cache_dir:
        return Path(os.path.expanduser(str(cache_dir)))
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def describe_cache(cache_dir: str | os.PathLike[str] | None) -> str:
    """Human description of where weights are looked for."""
    if cache_dir:
        return str(Path(os.path.expanduser(str(cache_dir))))
    places = [str(url_cache_dir(None))]
    if _hf_available():
        places.insert(0, str(hf_cache_dir(None)))
    return " and ".join(places)


def cached_weights(source: TagSource, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local file of a tag's weights if open_clip's caches already hold it, else None.

    Looks exactly where open_clip's ``download_pretrained`` would put the file: the Hugging Face cache
    (``huggingface_hub.try_to_load_from_cache``, no network) for hub tags, and the URL cache for URL tags.
    """
    if source.local_file:
        path = Path(source.local_file)
        return path if path.is_file() else None
    if source.hf_repo and _hf_available():
        from huggingface_hub import try_to_load_from_cache

        for filename in source.hf_filenames:
            hit = try_to_load_from_cache(source.hf_repo, filename, cache_dir=str(hf_cache_dir(cache_dir)))
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    if source.url:
        path = url_cache_dir(cache_dir) / os.path.basename(urlparse(source.url).path)
        if path.is_file():
            return path
    return None


def _download_host(source: TagSource) -> tuple[str, int]:
    if source.hf_repo and _hf_available():
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    else:
        endpoint = source.url
    parsed = urlparse(endpoint)
    return parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme != "http" else 80)


def reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def fetch_command(name: str, tag: str, cache_dir: str | os.PathLike[str] | None) -> str:
    """The command that downloads ``name``/``tag`` ahead of time."""
    cache = f" --cache-dir {cache_dir}" if cache_dir else ""
    return f"cliptrase models fetch {name}:{tag}{cache}"


def ensure_downloadable(source: TagSource, cache_dir: str | os.PathLike[str] | None) -> None:
    """Raise :class:`WeightsUnavailableError` at once when a cache miss cannot be downloaded.

    Offline means ``HF_HUB_OFFLINE`` is set, or the download host does not accept a connection within a
    few seconds (a compute node without internet), instead of the hub client's long retries.
    """
    host, port = _download_host(source)
    if hub_offline():
        why = "HF_HUB_OFFLINE is set"
    elif not reachable(host, port):
        why = f"{host} is unreachable"
    else:
        return
    raise WeightsUnavailableError(
        f"weights of {source.name}:{source.tag} are not in the cache ({describe_cache(cache_dir)}) and "
        f"cannot be downloaded ({why}); on a machine with internet run "
        f"`{fetch_command(source.name, source.tag, cache_dir)}` (same cache), or set model.weights=FILE"
    )


def fetch(name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download (or find in the cache) the weights of ``name``/``tag`` with open_clip's own downloader."""
    from open_clip.pretrained import download_pretrained

    source = tag_source(name, tag)
    hit = cached_weights(source, cache_dir)
    if hit is not None:
        logger.info("weights of %s:%s from the cache: %s", name, tag, hit)
        return hit
    ensure_downloadable(source, cache_dir)
    path = download_pretrained(open_clip.get_pretrained_cfg(name, tag), cache_dir=cache_dir)
    if not path or not Path(path).is_file():
        raise DownloadError(f"open_clip returned no file for {name}:{tag}")
    return Path(path)
