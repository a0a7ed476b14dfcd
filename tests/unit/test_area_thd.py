"""SCLIP's VOC21 knobs (logit_scale 65, area_thd 0.1, prob_thd 0.1) on a hand-built logit map.

The reference is SCLIP's postprocess written out as it reads (wangf3014/SCLIP ``clip_segmentor.py:148-170``:
softmax of the scaled scores, max over each class's queries, one-hot argmax areas of the foreground
classes, classes with area <= area_thd x foreground area multiplied by 0, argmax, prob_thd).
"""

from __future__ import annotations

import torch

from cliptrase.inference.scoring import scores_to_labels, suppress_small_classes


def _sclip_postprocess(scores, query_idx, logit_scale, prob_thd, area_thd):
    probs = (scores * logit_scale).softmax(0)
    n_cls = int(query_idx.max()) + 1
    cls_index = torch.nn.functional.one_hot(query_idx, n_cls).T.view(n_cls, -1, 1, 1)
    class_probs = (probs[None] * cls_index).max(1)[0]
    if area_thd is not None:
        onehot = torch.nn.functional.one_hot(class_probs.argmax(0), n_cls).to(class_probs.dtype)
        area = onehot[:, :, 1:].sum((0, 1), keepdim=True)
        keep = (area > area_thd * area.sum()).to(class_probs.dtype)
        class_probs[1:] *= keep.transpose(0, -1)
    pred = class_probs.argmax(0)
    pred[class_probs.max(0)[0] < prob_thd] = 0
    return pred


def _logit_map() -> tuple[torch.Tensor, torch.Tensor]:
    """20 x 20 map, 4 prompts: background (2 words), 'cat', 'dog'.

    Background everywhere except a 10 x 10 cat square with a 2 x 3 dog patch inside it: the dog covers 6 of
    the 100 foreground pixels (6 %), and 'cat' is its runner-up.
    """
    scores = torch.full((4, 20, 20), 0.20)
    scores[0] = 0.26  # background word 1
    scores[1] = 0.25  # background word 2
    scores[2, 5:15, 5:15] = 0.30  # cat square
    scores[3, 8:10, 8:11] = 0.32  # dog patch inside the square
    scores[2, 8:10, 8:11] = 0.31
    return scores, torch.tensor([0, 0, 1, 2])


def test_area_thd_equals_sclip_postprocess():
    scores, idx = _logit_map()
    ours = scores_to_labels(scores, idx, 3, 65.0, 0.1, area_thd=0.1)
    assert torch.equal(ours, _sclip_postprocess(scores, idx, 65.0, 0.1, 0.1))


def test_sclip_voc21_knobs_change_the_output_as_sclip_does():
    scores, idx = _logit_map()
    plain = scores_to_labels(scores, idx, 3, 40.0, 0.1)
    knobs = scores_to_labels(scores, idx, 3, 65.0, 0.1, area_thd=0.1)
    assert (plain[8:10, 8:11] == 2).all()  # without the area rule the dog patch stays
    assert (knobs[8:10, 8:11] == 1).all()  # 6 % of the foreground <= 10 %: its pixels go to the runner-up
    assert torch.equal(knobs[plain != 2], plain[plain != 2])
    for scale, thd, area in ((40.0, 0.1, None), (65.0, 0.1, None), (65.0, 0.0, 0.1), (50.0, 0.3, 0.05)):
        assert torch.equal(
            scores_to_labels(scores, idx, 3, scale, thd, area_thd=area),
            _sclip_postprocess(scores, idx, scale, thd, area),
        )


def test_suppressed_class_goes_to_background_when_it_is_next():
    scores = torch.zeros(2, 10, 10)
    scores[0] = 0.2
    scores[1, :1, :5] = 0.3  # a 5-pixel foreground class: all of the foreground, so it survives
    assert torch.equal(suppress_small_classes(scores, 0.1), scores)
    scores3 = torch.cat([scores, torch.zeros(1, 10, 10)])
    scores3[2, 5:, :] = 0.4  # a 50-pixel class: the 5-pixel one is now 9 % of the foreground
    labels = scores_to_labels(scores3, torch.arange(3), 3, 65.0, 0.0, area_thd=0.1)
    assert (labels[:1, :5] == 0).all() and (labels[5:] == 2).all()
