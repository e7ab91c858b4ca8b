# Tiny UperNet with ConvNeXt-atto for the benchmark smoke tests: the ADE20K recipe's model layout (SyncBN heads,
# auxiliary FCN head on stage 2) at toy widths. Written out in full because mmengine cannot resolve `mmseg::` bases
# when mmseg is installed as onedl-mmsegmentation.
default_scope = 'mmseg'
custom_imports = dict(imports=['convnext_dense.convnext'], allow_failed_imports=False)
crop_size = (128, 128)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=crop_size),
    backbone=dict(type='ConvNeXt', arch='atto', drop_path_rate=0.1),
    decode_head=dict(type='UPerHead', in_channels=[40, 80, 160, 320], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                     channels=32, dropout_ratio=0.1, num_classes=5, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type='FCNHead', in_channels=160, in_index=2, channels=16, num_convs=1, concat_input=False,
                        dropout_ratio=0.1, num_classes=5, norm_cfg=norm_cfg, align_corners=False,
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))
optim_wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
