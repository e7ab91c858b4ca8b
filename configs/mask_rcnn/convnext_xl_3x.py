# No official recipe: picked from the paper's sweep (lr {1e-4, 2e-4}, decay {0.7, 0.8, 0.9, 0.95}, drop path
# 0.3..0.8). lr 1e-4 and decay 0.95 as Mask R-CNN T, drop path 0.8 as Cascade XL; 12 layers. ImageNet-22K, no AMP
# (as Cascade XL).
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='xlarge', drop_path_rate=0.8,
                  init_cfg=dict(checkpoint='checkpoints/convnext_xlarge_22k_224.pth')),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
optim_wrapper = dict(type='OptimWrapper', paramwise_cfg=dict(decay_rate=0.95, num_layers=12))
