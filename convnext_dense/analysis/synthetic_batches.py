"""Synthetic training and test batches for mmdet and mmseg models, as their data loaders deliver them.

Benchmarks need batches of realistic size and content without a data set on disk: images of the benchmark's size,
and ground truth every head of the model can train on (boxes with masks inside them for detectors, label maps for
segmentors, labels valid for every head). What the config's training pipeline loads decides the rest, as its data
loader would: instance masks only where it loads them (RTMDet's assigner takes masks it is given for its own), a
panoptic label map (``gt_sem_seg``) where it loads one, and CenterNet's ``border`` where its pipeline pads with
``RandomCenterCropPad``.
"""
import numpy as np
import torch

from ..utils.config_tree import walk
from .benchmark import config_task


def num_classes(cfg) -> int:
    """The smallest ``num_classes`` (or panoptic ``num_things_classes``) of the model's heads, so every synthetic
    label is valid for all of them."""
    found = [node[key] for _, node in walk(cfg.model, 'model') for key in ('num_classes', 'num_things_classes')
             if isinstance(node.get(key), int)]
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
    detection = config_task(cfg) == 'detection'
    loads = _loaded_annotations(cfg) if detection else set()
    inputs, samples = [], []
    for index in range(batch_size):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        meta = dict(img_id=index, img_path=f'synthetic_{index}.jpg', ori_shape=shape, img_shape=shape,
                    pad_shape=shape, scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
        if 'border' in loads:  # RandomCenterCropPad's (top, bottom, left, right) of the image in the padded one
            meta['border'] = (0, height, 0, width)
        if detection:
            samples.append(_detection_sample(meta, rng, classes, num_instances, with_gt, loads,
                                             _stuff_classes(cfg, classes)))
        else:
            samples.append(_segmentation_sample(meta, rng, classes, with_gt))
    return dict(inputs=inputs, data_samples=samples)


def _loaded_annotations(cfg) -> set:
    """What the training pipeline gives a detector besides boxes: ``masks``, ``seg`` (a label map) and ``border``.
    A config without a training pipeline (a model config) gets masks."""
    nodes = [node for _, node in walk(cfg.get('train_dataloader'), 'train_dataloader')]
    types = [str(node.get('type')).split('.')[-1] for node in nodes]
    loaders = {'LoadAnnotations': (False, False), 'LoadPanopticAnnotations': (True, True)}  # their defaults
    loads = set()
    for node, kind in zip(nodes, types):
        if kind in loaders:
            default_mask, default_seg = loaders[kind]
            loads |= {'masks'} if node.get('with_mask', default_mask) else set()
            loads |= {'seg'} if node.get('with_seg', default_seg) else set()
    if not any(kind in loaders for kind in types):
        loads.add('masks')
    pipelines = [cfg.get(key) for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    if any(str(node.get('type')).endswith('RandomCenterCropPad') for p in pipelines for _, node in walk(p, 'p')):
        loads.add('border')
    return loads


def _stuff_classes(cfg, things: int) -> range:
    """The labels of a label map's background: a panoptic model's stuff classes (they follow its things), else any."""
    for _, node in walk(cfg.model, 'model'):
        stuff = node.get('num_stuff_classes')
        if isinstance(stuff, int) and stuff > 0 and isinstance(node.get('num_things_classes'), int):
            return range(node['num_things_classes'], node['num_things_classes'] + stuff)
    return range(things)


def _detection_sample(meta: dict, rng: np.random.Generator, classes: int, count: int, with_gt: bool,
                      loads: set = frozenset({'masks'}), stuff: range = range(0)):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData
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
    labels = rng.integers(0, classes, count)
    sample.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.from_numpy(boxes)), labels=torch.from_numpy(labels))
    if 'masks' in loads:
        sample.gt_instances.masks = BitmapMasks(masks, height, width)
    if 'seg' in loads:  # stuff in blocks, each instance's mask painted over it with its label
        block = 16
        coarse = rng.choice(stuff, (-(-height // block), -(-width // block)))
        seg = np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[:height, :width].astype(np.int32)
        for mask, label in zip(masks, labels):
            seg[mask.astype(bool)] = label
        sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(seg[None]))
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
