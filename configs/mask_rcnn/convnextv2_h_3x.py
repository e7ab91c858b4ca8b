# ConvNeXt V2-H, FCMAE pre-trained on ImageNet-1K. The paper's COCO Mask R-CNN table (arXiv 2301.00808, as indexed by
# Papers with Code) reports mask AP 48.9 for V2-H FCMAE; its fine-tuning settings are not published. Our choice: lr
# 1e-4 and layer-wise decay 0.95 over 12 layers as V2-B (mmdetection projects/ConvNeXt-V2), drop path 0.6, 3x, AMP.
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='huge', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_huge_1k_224_fcmae.pt')),
    neck=dict(in_channels=[352, 704, 1408, 2816]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
