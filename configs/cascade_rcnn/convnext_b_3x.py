# Official recipe: ConvNeXt-B (ImageNet-1K), drop path 0.7, lr 2e-4, layer-wise decay 0.8 over 12 layers, AMP.
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/convnext_base_1k_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
