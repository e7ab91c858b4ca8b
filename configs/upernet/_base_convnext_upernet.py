# UperNet with a ConvNeXt backbone on ADE20K, the official recipe: UPerHead (512 channels, pool scales 1,2,3,6) and an
# FCN auxiliary head on stage 2 (weight 0.4), SyncBN; 160k iterations of AdamW (wd 0.05) with stage-wise lr decay 0.9,
# linear warmup over 1500 iterations from 1e-6 x lr times poly decay (power 1.0) to 0 over all 160k, as mmcv's
# poly policy with warmup composed them; fp16 AMP; batch 2 img/GPU x 8.
# _base_ade20k_512.py / _base_ade20k_640.py add the data; the sizes set arch, drop path, lr, num_layers, AMP, head
# channels and the pretrained file (official release names, expected under checkpoints/).
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,  # as the official segmentation configs; pretrained weights replace it
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_1k_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='LearningRateDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=160000),
]
