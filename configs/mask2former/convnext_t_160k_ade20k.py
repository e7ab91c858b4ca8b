# ConvNeXt-T (ImageNet-1K), 512 crops: drop path 0.4, stage-wise decay 0.9 over 6 layers under the backbone's 0.1x lr
# (our choice, see the base); no published result.
_base_ = './_base_convnext_160k_ade20k.py'
