# Official recipe: ConvNeXt-L (ImageNet-22K), drop path 0.7, lr 1e-4, layer-wise decay 0.7 over 12 layers, no AMP.
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/convnext_large_22k_224.pth')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
