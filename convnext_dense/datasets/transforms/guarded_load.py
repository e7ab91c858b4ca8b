"""Samples that cannot be loaded, or whose parts do not fit, are skipped in training and stop evaluation, always with
the file named.

mmcv/mmdet/mmseg fail on such samples hours into a run, deep in a stack trace and often without the file: an image
that cannot be decoded (``AssertionError: failed to load image``), a one-pixel label map (``TypeError: 'numpy.uint8'
object does not support item assignment``), an RGB label map (``RuntimeError: only batches of spatial targets
supported``), a label beyond the classes (``IndexError: Target 8 is out of bounds``, a device-side assert on a GPU).
Worse, a label map of another size than its image trains silently on misaligned labels, and an image whose size
differs from the one in the COCO annotations (EXIF rotation) silently misplaces its boxes and masks.

:class:`GuardedLoad` wraps a loading transform (``LoadImageFromFile``, ``LoadAnnotations``) and checks what it loaded.
A bad training sample is skipped with a warning (mmengine's dataset then draws another one); a bad evaluation sample
raises :class:`BadSampleError`, since leaving it out would change the AP or mIoU. tools/train.py and tools/test.py
wrap the loading steps of every dataloader in it (:func:`convnext_dense.engine.safeguards.guard_pipelines`), so the
configs they save name it: ``import convnext_dense`` registers it, and stock mmdet/mmseg tools rerun those configs.
"""
import logging
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

IGNORE_INDEX = 255  # mmseg's ignore label


class BadSampleError(ValueError):
    """An evaluation sample that cannot be loaded, or whose annotations do not fit its image."""


@TRANSFORMS.register_module()
class GuardedLoad(BaseTransform):
    """Run ``transform`` (a loading step); skip (``skip=True``, training) or refuse a sample it cannot load or that
    does not fit: a label map that is not 2-D or not the size of its image, labels outside ``num_classes`` (and the
    ignore label), an image whose size differs from its annotation's ``height``/``width``."""

    def __init__(self, transform: dict, skip: bool, num_classes: Optional[int] = None,
                 ignore_index: int = IGNORE_INDEX):
        self.loader = TRANSFORMS.build(transform)
        self.skip = skip
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> Optional[dict]:
        files = ', '.join(results[k] for k in ('img_path', 'seg_map_path') if isinstance(results.get(k), str))
        try:
            loaded = self.loader(results)
            problem = _misfit(loaded, self.num_classes, self.ignore_index) if loaded is not None else None
        except Exception as exc:  # noqa: BLE001  any failure to load is this sample's problem: named, then handled
            problem = f'cannot be loaded ({type(exc).__name__}: {str(exc).strip()[:200]})'
            if min(results.get('ori_shape') or (2, 2)) < 2:
                problem += '; it is one pixel high or wide, which mmseg cannot read as a label map'
        if problem is None:
            return loaded
        if self.skip:
            print_log(f'skipped a training sample, {files}: {problem}; another sample is drawn in its place. '
                      'Fix or remove the file.', logger='current', level=logging.WARNING)
            return None
        raise BadSampleError(f'{files}: {problem}. Evaluation stops: leaving the sample out would change the '
                             'metrics. Fix the file, or remove it from the annotations / folder')

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.loader!r}, skip={self.skip})'


def _misfit(results: dict, num_classes: Optional[int], ignore_index: int) -> Optional[str]:
    shape = tuple(results['ori_shape']) if 'ori_shape' in results else None
    if shape is not None and 'height' in results and (results['height'], results['width']) != shape:
        return (f'the image is {shape[1]}x{shape[0]} (w x h) but its annotation says '
                f'{results["width"]}x{results["height"]}, so boxes and masks would be misplaced (an EXIF-rotated or '
                'replaced image?)')
    seg = results.get('gt_seg_map')
    if seg is None:
        return None
    if seg.ndim != 2:
        return f'the label map has shape {seg.shape}; it must be one channel (a 2-D map of class indices)'
    if shape is not None and seg.shape != shape:
        return f'the label map is {seg.shape[1]}x{seg.shape[0]} (w x h) but its image is {shape[1]}x{shape[0]}'
    if num_classes is not None:
        labels = np.unique(seg)
        wrong = labels[(labels >= num_classes) & (labels != ignore_index)]
        if wrong.size:
            return (f'labels {wrong.tolist()[:8]} are outside the {num_classes} classes (0..{num_classes - 1}, '
                    f'{ignore_index} ignored) after the dataset\'s label mapping (reduce_zero_label etc.)')
    return None
