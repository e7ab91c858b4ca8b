"""Synthetic training and test batches for mmdet and mmseg models, as their data loaders deliver them.

Benchmarks need batches of realistic size and content without a data set on disk: images of the benchmark's size,
and ground truth every head of the model can train on (boxes with masks inside them for detectors, label maps for
segmentors, labels valid for every head).
"""
import numpy as np
import torch

from ..utils.config_tree import walk
from .benchmark import config_task


def num_classes(cfg) -> int:
    """The smallest ``num_classes`` of the model's heads, so every synthetic label is valid for all of them."""
    found = [node['num_classes'] for _, node in walk(cfg.model, 'model') if isinstance(node.get('num_classes'), int)]
    if not found:
        raise ValueError('no num_classes in the model config; the synthetic labels need one')
    return min(found)


def synthetic_batch(cfg, batch_size: int, shape: tuple, rng: np.random.Generator, with_gt: bool = True,
                    num_instances: int = 7) -> dict:
    """A batch as the mmdet/mmseg data loaders deliver it (uint8 CHW images plus data samples), before the
    model's data preprocessor. Detection: ``num_instances`` boxes (HorizontalBoxes) with elliptic BitmapMasks and
    labels per image. Segmentation: a label map of random blocks."""
    height, width = shape
    classes = num_classes(cfg)
    inputs, samples = [], []
    for index in range(batch_size):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        meta = dict(img_id=index, img_path=f'synthetic_{index}.jpg', ori_shape=shape, img_shape=shape,
                    pad_shape=shape, scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
        if config_task(cfg) == 'detection':
            samples.append(_detection_sample(meta, rng, classes, num_instances, with_gt))
        else:
            samples.append(_segmentation_sample(meta, rng, classes, with_gt))
    return dict(inputs=inputs, data_samples=samples)


def _detection_sample(meta: dict, rng: np.random.Generator, classes: int, count: int, with_gt: bool):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=meta)
    if not with_gt:
        return sample
    height, width = meta['img_shape']
    sizes = rng.uniform(0.05, 0.5, (count, 2)) * (width, height)
    corners = rng.uniform(0, 1, (count, 2)) * ((width, height) - sizes)
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    masks = np.zeros((count, height, width), dtype=np.uint8)
    ys, xs = np.mgrid[:height, :width]
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        mask[((xs - cx) / rx)**2 + ((ys - cy) / ry)**2 <= 1] = 1
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.from_numpy(boxes)),
        labels=torch.from_numpy(rng.integers(0, classes, count)),
        masks=BitmapMasks(masks, height, width))
    return sample


def _segmentation_sample(meta: dict, rng: np.random.Generator, classes: int, with_gt: bool):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(meta, reduce_zero_label=False))
    if not with_gt:
        return sample
    height, width = meta['img_shape']
    block = 16
    coarse = rng.integers(0, classes, (-(-height // block), -(-width // block)))
    labels = np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[:height, :width]
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels[None].astype(np.int64)))
    return sample
