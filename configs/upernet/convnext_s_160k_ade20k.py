# Official recipe: ConvNeXt-S (ImageNet-1K), 512 crops, drop path 0.3, lr 1e-4, stage-wise decay 0.9 / 12, AMP.
_base_ = './_base_ade20k_512.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='checkpoints/convnext_small_1k_224.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
