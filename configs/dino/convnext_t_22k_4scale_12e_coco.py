# detrex's DINO-ConvNeXt-T-384-4scale recipe (box AP 52.4 in detrex's README): ConvNeXt-T, ImageNet-22K then 1K at 384.
_base_ = './_base_convnext_4scale_12e.py'
