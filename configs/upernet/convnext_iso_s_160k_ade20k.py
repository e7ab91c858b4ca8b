# Isotropic ConvNeXt-S (ImageNet-1K; 18 blocks of 384 channels), the recipe of UperNet ConvNeXt-T (18 blocks, about the
# same compute) with the differences `_base_convnext_iso_ade20k_512.py` lists: 512 crops, drop path 0.4, layer-wise
# decay 0.9 ** (7 / 19) = 0.962 per block (the stem at T's 0.9 ** 7), AMP. No published result.
_base_ = './_base_convnext_iso_ade20k_512.py'
