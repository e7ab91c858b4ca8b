"""Two sets of detections of one image matched one to one: how an exported graph, a converted checkpoint or another
config is shown to predict what the reference predicts.

Detections whose scores tie to within float noise may come out in another order, so matching goes by label, box and
score, not by position: each reference detection, best score first, takes the unmatched detection of its label
closest in box among those within the tolerances.
"""
import math
from dataclasses import dataclass, field
from typing import List, Mapping, Tuple

import numpy as np


@dataclass
class DetectionMatch:
    """The pairs (reference index, other index) and what found no partner; the largest differences of the pairs:
    ``box`` (pixels, any corner), ``score``, ``mask_pixels`` (share of the image's pixels on which a pair's masks
    differ) and ``mask_union`` (share of a pair's mask union on which they differ: 1 - mask IoU)."""
    pairs: List[Tuple[int, int]] = field(default_factory=list)
    unmatched_reference: List[int] = field(default_factory=list)
    unmatched_other: List[int] = field(default_factory=list)
    box: float = 0.
    score: float = 0.
    mask_pixels: float = 0.
    mask_union: float = 0.

    @property
    def unmatched(self) -> int:
        return len(self.unmatched_reference) + len(self.unmatched_other)


def match_detections(reference: Mapping, other: Mapping, box_tolerance: float = math.inf,
                     score_tolerance: float = math.inf) -> DetectionMatch:
    """Match ``other`` to ``reference``: mappings with ``bboxes`` (N, 4), ``scores`` (N,), ``labels`` (N,) and
    optionally ``masks`` (N, H, W), or COCO RLE dicts as mmdet's ``--out`` pickles store them."""
    ref_boxes, ref_scores, ref_labels = (np.asarray(reference[k], dtype=np.float64) for k in ('bboxes', 'scores',
                                                                                              'labels'))
    boxes, scores, labels = (np.asarray(other[k], dtype=np.float64) for k in ('bboxes', 'scores', 'labels'))
    ref_masks, masks = _masks(reference), _masks(other)
    result = DetectionMatch()
    free = np.ones(len(scores), dtype=bool)
    for i in np.argsort(-ref_scores, kind='stable'):
        box_errors = np.abs(boxes - ref_boxes[i]).max(axis=1) if len(boxes) else np.zeros(0)
        score_errors = np.abs(scores - ref_scores[i])
        fits = free & (labels == ref_labels[i]) & (box_errors <= box_tolerance) & (score_errors <= score_tolerance)
        if not fits.any():
            result.unmatched_reference.append(int(i))
            continue
        j = int(np.flatnonzero(fits)[np.argmin(box_errors[fits])])
        free[j] = False
        result.pairs.append((int(i), j))
        result.box = max(result.box, float(box_errors[j]))
        result.score = max(result.score, float(score_errors[j]))
        if ref_masks is not None and masks is not None:
            ours, theirs = masks[j].astype(bool), ref_masks[i].astype(bool)
            differ = np.count_nonzero(ours != theirs)
            result.mask_pixels = max(result.mask_pixels, differ / max(ours.size, 1))
            result.mask_union = max(result.mask_union, differ / max(np.count_nonzero(ours | theirs), 1))
    result.unmatched_other = [int(j) for j in np.flatnonzero(free)]
    return result


def _masks(detections: Mapping):
    masks = detections.get('masks')
    if masks is None:
        return None
    if len(masks) and isinstance(masks[0], dict):  # COCO RLE
        from pycocotools import mask as mask_util
        return [mask_util.decode(rle) for rle in masks]
    return np.asarray(masks)
