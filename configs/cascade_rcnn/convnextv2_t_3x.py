# ConvNeXt V2-T, FCMAE pre-trained on ImageNet-1K. No published V2 Cascade Mask R-CNN recipe or result (the ConvNeXt V2
# paper, arXiv 2301.00808, uses Mask R-CNN): our choice, the official V1-T Cascade recipe (drop path 0.4, lr 2e-4,
# layer-wise decay 0.7 over 6 layers, 3x, AMP) with the V2 backbone.
_base_ = './_base_convnextv2_3x.py'
