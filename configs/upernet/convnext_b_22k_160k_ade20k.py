# Official recipe: ConvNeXt-B (ImageNet-22K), 640 crops, drop path 0.4, lr 1e-4, stage-wise decay 0.9 / 12, AMP.
_base_ = './_base_ade20k_640.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnext_base_22k_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
