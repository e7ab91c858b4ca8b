# Official recipe: ConvNeXt-L (ImageNet-22K), 640 crops, drop path 0.4, lr 1e-4, stage-wise decay 0.9 / 12, no AMP.
_base_ = './_base_ade20k_640.py'
model = dict(
    backbone=dict(arch='large', init_cfg=dict(checkpoint='checkpoints/convnext_large_22k_224.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(type='OptimWrapper', paramwise_cfg=dict(num_layers=12))
