# detrex's DINO-ConvNeXt-B-384-4scale recipe (box AP 55.1 in detrex's README): ConvNeXt-B, ImageNet-22K then 1K at 384.
_base_ = './_base_convnext_4scale_12e.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnext_base_22k_1k_384.pth')),
    neck=dict(in_channels=[256, 512, 1024]))
