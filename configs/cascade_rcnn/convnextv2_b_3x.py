# ConvNeXt V2-B, FCMAE pre-trained on ImageNet-1K. No published V2 Cascade recipe or result: our choice, the official
# V1-B ImageNet-1K Cascade recipe (drop path 0.7, lr 2e-4, layer-wise decay 0.8 over 12 layers, 3x, AMP).
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_base_1k_224_fcmae.pt')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
