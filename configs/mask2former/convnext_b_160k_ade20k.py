# ConvNeXt-B (ImageNet-1K), 512 crops: drop path 0.4, stage-wise decay 0.9 over 12 layers under the backbone's 0.1x lr
# (our choice, see the base); no published result.
_base_ = './_base_convnext_160k_ade20k.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnext_base_1k_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
