# Official recipe: ConvNeXt-B (ImageNet-22K), drop path 0.6, lr 1e-4, layer-wise decay 0.8 over 12 layers, AMP.
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='checkpoints/convnext_base_22k_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
