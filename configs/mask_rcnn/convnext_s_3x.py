# No official recipe: picked from the paper's sweep (lr {1e-4, 2e-4}, decay {0.7, 0.8, 0.9, 0.95}, drop path
# 0.3..0.8). lr 1e-4 and decay 0.95 as Mask R-CNN T (the official recipes keep the decay rate across depths), drop
# path 0.6 as Cascade S; 12 layers for the 27-block stage 3. ImageNet-1K, AMP.
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='checkpoints/convnext_small_1k_224.pth')))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.95, num_layers=12))
