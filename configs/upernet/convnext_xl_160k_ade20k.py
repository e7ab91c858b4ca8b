# Official recipe: ConvNeXt-XL (ImageNet-22K), 640 crops, drop path 0.4, lr 8e-5, stage-wise decay 0.9 / 12, no AMP.
_base_ = './_base_ade20k_640.py'
model = dict(
    backbone=dict(arch='xlarge', init_cfg=dict(checkpoint='checkpoints/convnext_xlarge_22k_224.pth')),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=8e-5), paramwise_cfg=dict(num_layers=12))
