# Tiny UperNet with ConvNeXt-atto for the benchmark smoke tests: the ADE20K recipe's layout (SyncBN heads, auxiliary
# FCN head on stage 2) at toy widths.
_base_ = ['mmseg::_base_/models/upernet_r50.py']
default_scope = 'mmseg'
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
crop_size = (128, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', drop_path_rate=0.1),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=32, num_classes=5),
    auxiliary_head=dict(in_channels=160, channels=16, num_classes=5),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))
optim_wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
