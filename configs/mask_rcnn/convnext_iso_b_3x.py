# Isotropic ConvNeXt-B (ImageNet-1K; 18 blocks of 768 channels), the recipe of Mask R-CNN ConvNeXt-B (about the same
# compute) with the differences `_base_convnext_iso_3x.py` lists, and drop path 0.5 instead of B's 0.7: B-iso was
# pre-trained at 0.2 where B was at 0.5, and the official detection recipes add 0.2-0.3 to the ImageNet rate (T 0.1 ->
# 0.4, S 0.4 -> 0.6, B 0.5 -> 0.7). Layer-wise decay 0.95 ** (13 / 19) = 0.966 per block (the stem at B's 0.95 ** 13),
# AMP. No published result.
_base_ = './_base_convnext_iso_3x.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='checkpoints/convnext_iso_base_1k_224_ema.pth')),
    neck=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.95**(13 / 19)))
