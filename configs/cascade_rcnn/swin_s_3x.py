# Swin-S (ImageNet-1K) counterpart of convnext_s_3x.py, official Swin recipe: drop path 0.2, lr 1e-4, AMP.
_base_ = './_base_swin_3x.py'
model = dict(
    backbone=dict(depths=[2, 2, 18, 2],
                  init_cfg=dict(checkpoint='checkpoints/swin_small_patch4_window7_224.pth')))
