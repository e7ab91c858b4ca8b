"""Mask R-CNN with ConvNeXt-atto on the synthetic shapes (tools/make_demo_data.py): trains and evaluates on a CPU.

A delta over mmdet's own Mask R-CNN config: our backbone, the demo data and classes, small images, fewer proposals,
AdamW with layer-wise learning-rate decay, no pretrained weights. More epochs learn more:
--cfg-options train_cfg.max_epochs=N train_cfg.val_interval=N.
"""
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

data_root = 'data/demo/coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'), palette=[(220, 20, 60), (0, 128, 0), (0, 0, 230)])
num_classes = len(metainfo['classes'])
image_scale = (224, 224)
max_epochs = 12

model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    neck=dict(in_channels=[40, 80, 160, 320]),
    roi_head=dict(bbox_head=dict(num_classes=num_classes), mask_head=dict(num_classes=num_classes)),
    # At most 4 shapes per image: a few hundred proposals and 20 detections are plenty, and keep the CPU busy less.
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01),
]
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise', num_layers=6),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=4)
