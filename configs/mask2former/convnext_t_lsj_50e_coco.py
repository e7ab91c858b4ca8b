# ConvNeXt-T (ImageNet-1K): drop path 0.4, layer-wise decay 0.95 over 6 layers under the backbone's 0.1x lr (our
# choice, see the base); no published result.
_base_ = './_base_convnext_lsj_50e_coco.py'
