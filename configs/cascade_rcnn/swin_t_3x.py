# Swin-T (ImageNet-1K) counterpart of convnext_t_3x.py, official Swin recipe: drop path 0.2, lr 1e-4, AMP.
_base_ = './_base_swin_3x.py'
