"""UperNet with ConvNeXt-atto on the synthetic shapes (tools/misc/make_demo_data.py, ADE20K layout): trains and
evaluates on a CPU.

A delta over mmseg's UperNet config: our backbone (random init), 64-channel heads, the demo classes (png labels 1..4
after ``reduce_zero_label``; 0 is unlabelled), 128 px crops, AdamW with stage-wise learning-rate decay as in the
official segmentation recipes. Longer runs learn more: --cfg-options train_cfg.max_iters=N.
"""
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

data_root = 'data/demo/ade/ADEChallengeData2016'
metainfo = dict(classes=('background', 'circle', 'square', 'triangle'),
                palette=[(120, 120, 120), (220, 20, 60), (0, 128, 0), (0, 0, 230)])
num_classes = 4
crop_size = (128, 128)
image_scale = (192, 192)
max_iters = 200

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=64, num_classes=num_classes),
    auxiliary_head=dict(in_channels=160, channels=32, num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# tools/test.py --tta: the official ms+flip protocol of configs/upernet/_base_ade20k_512.py at the demo's test scale.
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(image_scale[0] * r), int(image_scale[1] * r)), keep_ratio=True)
             for r in [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],  # reduce_zero_label: the data set's
            [dict(type='PackSegInputs')],
        ]),
]
tta_model = dict(type='SegTTAModel')
# ADE20KDataset fixes its 150 classes; the generic dataset with its suffixes and reduce_zero_label reads the same files.
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg', seg_map_suffix='.png',
               reduce_zero_label=True)
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# A constant learning rate after warmup, so that train_cfg.max_iters alone sets the length of a run.
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)]
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_last=True))
