# Official recipe: ConvNeXt-T (ImageNet-1K), 512 crops, drop path 0.4, lr 1e-4, stage-wise decay 0.9 / 6, AMP.
_base_ = './_base_ade20k_512.py'
