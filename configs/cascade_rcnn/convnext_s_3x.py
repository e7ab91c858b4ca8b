# Official recipe: ConvNeXt-S (ImageNet-1K), drop path 0.6, lr 2e-4, layer-wise decay 0.7 over 12 layers, AMP.
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='checkpoints/convnext_small_1k_224.pth')))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
