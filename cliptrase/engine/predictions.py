"""``save_predictions=K``: the first K images' label maps, with the image and GT the run scored at display
size for the qualitative grid, written by a read-only test-loop hook (it never changes what is scored)
through the one prediction writer (:func:`cliptrase.inference.prediction_files.write_prediction`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from mmengine.hooks import Hook
from PIL import Image

from cliptrase.inference.prediction_files import write_prediction

logger = logging.getLogger(__name__)


class SavePredictionsHook(Hook):
    """Write ``<stem>_labels.png``, ``<stem>_image.jpg`` and ``<stem>_gt.png`` for the first ``limit``
    test images.

    The image is the model's input (after the protocol's resize / crop; BGR as mmcv loads it) and the GT
    the metric compares with, so image, GT and prediction line up under either protocol.

    Args:
        out_dir: destination folder.
        limit: number of images.
        class_names: the scored classes, indexed by label.
    """

    priority = "LOW"

    def __init__(self, out_dir: Path, limit: int, class_names: list[str]) -> None:
        self.out_dir, self.limit, self.class_names = Path(out_dir), limit, list(class_names)
        self.saved = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        inputs = (data_batch or {}).get("inputs", [])
        for i, sample in enumerate(outputs or []):
            if self.saved >= self.limit:
                return
            labels = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
            gt = sample.gt_sem_seg.data[0].cpu().numpy() if "gt_sem_seg" in sample else None
            write_prediction(
                self.out_dir,
                Path(sample.metainfo["img_path"]).stem,
                labels,
                self.class_names,
                image=_input_image(inputs[i]) if i < len(inputs) else _file_image(sample),
                gt=gt,
                grid_inputs=True,
            )
            self.saved += 1
        if self.saved >= self.limit:
            logger.info("saved %d predictions under %s", self.saved, self.out_dir)


def _input_image(tensor) -> Image.Image:
    """The loader's (3, H, W) uint8 BGR tensor as an RGB image."""
    return Image.fromarray(np.ascontiguousarray(tensor.cpu().numpy().transpose(1, 2, 0)[..., ::-1]))


def _file_image(sample) -> Image.Image:
    """The image file itself, when the batch carries no inputs."""
    with Image.open(sample.metainfo["img_path"]) as im:
        return im.convert("RGB")
