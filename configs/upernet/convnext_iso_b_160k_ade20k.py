# Isotropic ConvNeXt-B (ImageNet-1K; 18 blocks of 768 channels), the recipe of UperNet ConvNeXt-B (about the same
# compute) with the differences `_base_convnext_iso_ade20k_512.py` lists: 512 crops, drop path 0.4, layer-wise decay
# 0.9 ** (13 / 19) = 0.930 per block (the stem at B's 0.9 ** 13), AMP. No published result.
_base_ = './_base_convnext_iso_ade20k_512.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnext_iso_base_1k_224_ema.pth')),
    neck=dict(in_channels=768),
    decode_head=dict(in_channels=[192, 384, 768, 768]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9**(13 / 19)))
