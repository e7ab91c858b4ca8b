# Official recipe: ConvNeXt-T (ImageNet-1K), drop path 0.4, lr 2e-4, layer-wise decay 0.7 over 6 layers, AMP.
_base_ = './_base_convnext_3x.py'
