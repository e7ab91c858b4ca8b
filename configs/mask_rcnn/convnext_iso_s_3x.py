# Isotropic ConvNeXt-S (ImageNet-1K; 18 blocks of 384 channels), the recipe of Mask R-CNN ConvNeXt-T (18 blocks, about
# the same compute) with the differences `_base_convnext_iso_3x.py` lists: drop path 0.4 as T (both pre-trained at
# 0.1), layer-wise decay 0.95 ** (7 / 19) = 0.981 per block (the stem at T's 0.95 ** 7), AMP. No published result.
_base_ = './_base_convnext_iso_3x.py'
