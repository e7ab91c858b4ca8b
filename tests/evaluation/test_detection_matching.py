"""match_detections pairs detections one to one by label, box and score, whatever their order, and measures the pairs;
COCO RLE masks (mmdet's --out pickles) and arrays are compared alike."""
import numpy as np
from pycocotools import mask as mask_util

from convnext_dense.evaluation.detection_matching import match_detections


def detections(boxes, scores, labels, masks=None):
    result = dict(bboxes=np.array(boxes, np.float32), scores=np.array(scores, np.float32),
                  labels=np.array(labels, np.int64))
    if masks is not None:
        result['masks'] = masks
    return result


def box_mask(box, size=(20, 30)):
    mask = np.zeros(size, np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 1
    return mask


def test_pairs_are_found_in_any_order_and_measured():
    reference = detections([[0, 0, 10, 10], [5, 5, 15, 15], [1, 1, 4, 4]], [0.9, 0.5, 0.5], [0, 1, 1],
                           [box_mask([0, 0, 10, 10]), box_mask([5, 5, 15, 15]), box_mask([1, 1, 4, 4])])
    masks = [box_mask([1, 1, 4, 4]), box_mask([0, 0, 10, 10]), box_mask([5, 5, 15, 14])]
    other = detections([[1, 1, 4.002, 4], [0, 0, 10, 10], [5, 5, 15, 15]], [0.5001, 0.9, 0.5], [1, 0, 1],
                       [mask_util.encode(np.asfortranarray(m)) for m in masks])
    matched = match_detections(reference, other, box_tolerance=0.01, score_tolerance=1e-3)
    assert sorted(matched.pairs) == [(0, 1), (1, 2), (2, 0)] and matched.unmatched == 0
    assert abs(matched.box - 0.002) < 1e-4 and abs(matched.score - 1e-4) < 1e-6
    assert matched.mask_pixels == 10 / 600 and matched.mask_union == 10 / 100


def test_what_is_beyond_the_tolerances_or_of_another_label_is_unmatched_on_both_sides():
    reference = detections([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 1, 2])
    other = detections([[0, 0, 10.5, 10], [5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 2, 2]], [0.9, 0.6, 0.7, 0.3],
                       [0, 1, 0, 2])
    matched = match_detections(reference, other, box_tolerance=0.1, score_tolerance=0.01)
    assert matched.pairs == [] and matched.unmatched_reference == [0, 1, 2]
    assert matched.unmatched_other == [0, 1, 2, 3] and matched.unmatched == 7
    loose = match_detections(reference, other, box_tolerance=1.)
    assert loose.pairs == [(0, 0), (1, 1)] and loose.unmatched_reference == [2] and loose.unmatched_other == [2, 3]
    assert loose.box == 0.5 and abs(loose.score - 0.2) < 1e-6


def test_no_detections_on_either_side():
    empty = detections(np.zeros((0, 4)), [], [], np.zeros((0, 20, 30), np.uint8))
    assert match_detections(empty, empty).unmatched == 0
    one = detections([[0, 0, 5, 5]], [0.5], [0], [box_mask([0, 0, 5, 5])])
    assert match_detections(one, empty).unmatched_reference == [0]
    assert match_detections(empty, one).unmatched_other == [0]
