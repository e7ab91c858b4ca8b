# Swin-B (ImageNet-1K) counterpart of convnext_b_3x.py, official Swin recipe: drop path 0.3, lr 1e-4, AMP.
_base_ = './_base_swin_3x.py'
model = dict(
    backbone=dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='checkpoints/swin_base_patch4_window7_224.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
