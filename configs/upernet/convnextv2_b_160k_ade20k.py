# ConvNeXt V2-B, FCMAE pre-trained on ImageNet-1K, 512 crops. The paper (arXiv 2301.00808) does not publish its ADE20K
# settings: our choice, the official V1-B ImageNet-1K recipe (drop path 0.4, lr 1e-4, stage-wise decay 0.9 / 12, AMP).
_base_ = './_base_convnextv2_ade20k_512.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnextv2_base_1k_224_fcmae.pt')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
