"""The opt-in stage timer (scripts/bench.py's breakdown) on a real harness run."""

from __future__ import annotations

import pytest
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.engine.timing import StageTimerHook
from cliptrase.harness.evaluate import evaluate
from cliptrase.utils.profiling import STAGES, StageTimer, active_timer, stage

pytestmark = pytest.mark.integration


def test_stage_is_a_no_op_without_a_timer():
    assert active_timer() is None
    with stage("encoder"):
        pass
    timer = StageTimer()
    with timer.activate():
        assert active_timer() is timer
        with stage("encoder"):
            pass
    assert active_timer() is None and timer.calls["encoder"] == 1
    timer.add("text", 2.0)
    timer.reset(keep=("text",))
    assert dict(timer.totals) == {"text": 2.0}


@pytest.mark.parametrize("protocol", ["paper224", "standard"])
def test_stage_timer_hook_on_the_harness(protocol, tmp_path, tiny_arch):
    cfg = compose_eval(
        [
            "model=random_vit_b16",
            f"model.name={tiny_arch}",
            "model.slug=tiny",
            "dataset=demo",
            f"protocol={protocol}",
            "max_images=3",
            "num_workers=0",
            f"paths.results_dir={tmp_path}",
        ]
    )
    timer = StageTimer()
    hook = StageTimerHook(timer, warmup=1, rss_every=1)
    with timer.activate():
        n_images = evaluate(cfg, validate(cfg), "timing", hooks=[hook]).n_images
    assert n_images == 3 and hook.seen == 3 and hook.images == 2
    assert [r[0] for r in hook.rss] == [1, 2, 3]
    assert all(raw > 0 and trimmed > 0 and tensors > 0 for _, raw, trimmed, tensors in hook.rss)
    assert {"data", "encoder", "logits", "metric", "text"} <= set(timer.totals)
    assert timer.calls["metric"] == 2  # warm-up iteration dropped
    per_image = sum(timer.totals[k] for k in STAGES if k in timer.totals)
    assert 0 < per_image <= hook.seconds
