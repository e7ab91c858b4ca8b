"""convnext_dense.analysis.synthetic_batches: batches as the mmdet/mmseg data loaders deliver them, with ground truth
every head of the model trains on."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

import convnext_dense.analysis.benchmark as common
from convnext_dense.analysis.synthetic_batches import num_classes, synthetic_batch

ROOT = Path(__file__).resolve().parents[2]
DETECTION = 'tests/data/bench_mask_rcnn_convnext_atto.py'
SEGMENTATION = 'tests/data/bench_upernet_convnext_atto.py'


def test_num_classes_is_the_smallest_of_every_head_at_any_depth():
    """Labels must be valid for every head: nested dicts and lists (a cascade's bbox heads) are all searched."""
    cfg = Config(dict(model=dict(
        backbone=dict(type='ConvNeXt'),
        rpn_head=dict(num_classes=1),
        roi_head=dict(bbox_head=[dict(num_classes=80), dict(num_classes=80)], mask_head=dict(num_classes=80)),
        name=dict(num_classes='not a count'))))
    assert num_classes(cfg) == 1
    cfg.model.rpn_head.num_classes = 90
    cfg.model.roi_head.bbox_head[1].num_classes = 12
    assert num_classes(cfg) == 12
    with pytest.raises(ValueError, match='no num_classes'):
        num_classes(Config(dict(model=dict(backbone=dict(type='ConvNeXt'), heads=[dict(channels=3)]))))


@pytest.mark.parametrize('config, losses', [
    (DETECTION, ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask')),
    (SEGMENTATION, ('decode.loss_ce', 'aux.loss_ce')),
])
def test_synthetic_batches_train_every_head(config, losses):
    """The synthetic batches are what the data loaders deliver: valid boxes with masks inside them, labels in range,
    and one training step computes every loss of the model from them."""
    from mmengine.optim import build_optim_wrapper
    cfg = common.load_benchmark_config(str(ROOT / config), {})
    shape = common.image_shape(cfg, (96, 128))
    batch = synthetic_batch(cfg, 2, shape, np.random.default_rng(0))
    assert [tuple(img.shape) for img in batch['inputs']] == [(3, 96, 128)] * 2
    for sample in batch['data_samples']:
        assert sample.img_shape == sample.ori_shape == (96, 128)
        if common.config_task(cfg) == 'detection':
            boxes, masks = sample.gt_instances.bboxes.tensor, sample.gt_instances.masks.masks
            assert len(boxes) == len(masks) == 7 and sample.gt_instances.labels.max() < num_classes(cfg)
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
            for (x1, y1, x2, y2), mask in zip(boxes.tolist(), masks):
                ys, xs = np.nonzero(mask)
                assert len(xs) and xs.min() >= int(x1) and xs.max() <= x2 and ys.min() >= int(y1) and ys.max() <= y2
        else:
            labels = sample.gt_sem_seg.data
            assert labels.shape == (1, 96, 128) and 0 <= labels.min() and labels.max() < num_classes(cfg)
    model = common.build_model(cfg, torch.device('cpu')).train()
    log_vars = model.train_step(batch, build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01))))
    for loss in losses:
        assert torch.isfinite(log_vars[loss]), loss


def test_test_batches_carry_no_ground_truth():
    cfg = common.load_benchmark_config(str(ROOT / DETECTION), {})
    sample, = synthetic_batch(cfg, 1, (64, 96), np.random.default_rng(0), with_gt=False)['data_samples']
    assert 'gt_instances' not in sample and sample.img_shape == (64, 96)


def test_the_training_pipeline_decides_what_ground_truth_comes():
    """As the data loaders: masks only where the training pipeline loads them (RTMDet's assigner takes any masks it is
    given), a panoptic label map (instances painted over stuff) where it loads one, CenterNet's ``border`` where its
    pipeline pads with RandomCenterCropPad; a model config without a pipeline gets masks."""
    def config(pipeline, test_pipeline=(), **heads):
        return Config(dict(default_scope='mmdet', model=dict(backbone=dict(type='ConvNeXt'), **heads),
                           train_dataloader=dict(dataset=dict(pipeline=list(pipeline))),
                           test_dataloader=dict(dataset=dict(pipeline=list(test_pipeline)))))

    def sample(cfg, with_gt=True):
        return synthetic_batch(cfg, 1, (64, 96), np.random.default_rng(0), with_gt=with_gt)['data_samples'][0]

    boxes = sample(config([dict(type='LoadAnnotations', with_bbox=True)], bbox_head=dict(num_classes=80)))
    assert 'masks' not in boxes.gt_instances and 'gt_sem_seg' not in boxes and 'border' not in boxes
    model_only = Config(dict(default_scope='mmdet', model=dict(bbox_head=dict(num_classes=3))))
    assert 'masks' in sample(model_only).gt_instances

    panoptic = sample(config([dict(type='LoadPanopticAnnotations')],
                             panoptic_head=dict(num_things_classes=80, num_stuff_classes=53)))
    masks, labels = panoptic.gt_instances.masks.masks.astype(bool), panoptic.gt_instances.labels
    seg = panoptic.gt_sem_seg.sem_seg[0].numpy()
    assert seg.shape == (64, 96) and labels.max() < 80
    things = masks.any(axis=0)
    assert ((seg[~things] >= 80) & (seg[~things] < 133)).all()
    assert (seg[masks[-1]] == labels[-1].item()).all()  # the last instance painted is on top

    centernet = config([dict(type='LoadAnnotations', with_bbox=True)], [dict(type='RandomCenterCropPad')],
                       bbox_head=dict(num_classes=80))
    assert sample(centernet, with_gt=False).border == (0, 64, 0, 96)
