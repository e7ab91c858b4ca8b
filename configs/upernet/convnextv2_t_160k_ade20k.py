# ConvNeXt V2-T, FCMAE pre-trained on ImageNet-1K, 512 crops. No published V2-T UperNet recipe or result (the ConvNeXt
# V2 paper, arXiv 2301.00808, reports ADE20K for B/L/H and not its settings): our choice, the official V1-T recipe
# (drop path 0.4, lr 1e-4, stage-wise decay 0.9 over 6, 160k, AMP).
_base_ = './_base_convnextv2_ade20k_512.py'
