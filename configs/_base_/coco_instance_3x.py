# COCO instance segmentation, 3x schedule (36 epochs, steps at 27 and 33) with AdamW and fp16 AMP, batch 2 img/GPU
# x 8 GPUs, as in the official ConvNeXt and Swin detection recipes. Shared by the Mask R-CNN and Cascade Mask R-CNN
# configs of every backbone; the backbone bases add their optimizer constructor and settings.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# Multi-scale training from DETR: short side 480..800 (step 32, long side <= 1333), or short side {400, 500, 600},
# a random 384..600 crop, then the same multi-scale resize; horizontal flip with probability 0.5.
multi_scale = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
# Linear warmup over the first 500 iterations from 0.001 x lr (the recipes' schedule_1x), then steps at 27 and 33.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# fp16 AMP; recipes trained without it switch to type='OptimWrapper'.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

# Multi-scale + flip test (tools/test.py --tta), mmdet's TTA as in its own *_tta.py configs (e.g. retinanet_tta.py):
# 3 scales x 2 flips, DetTTAModel flips the boxes back and merges them by class-wise NMS. The ConvNeXt papers report
# single-scale AP only. DetTTAModel merges boxes, not masks: tools/test.py --tta drops the mask head and reports box AP.
tta_model = dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=scale, keep_ratio=True) for scale in [(1333, 800), (666, 400), (2000, 1200)]],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                                   'flip', 'flip_direction'))],
        ]),
]
