# ConvNeXt V2-L, FCMAE pre-trained on ImageNet-1K. The paper (arXiv 2301.00808) does not publish its COCO fine-tuning
# settings; our choice: lr 1e-4 and layer-wise decay 0.95 over 12 layers as V2-B (mmdetection projects/ConvNeXt-V2),
# drop path 0.5 (rising with size as in V1's sweep), 3x, AMP (our LayerNorm and GRN are fp16-safe).
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_large_1k_224_fcmae.pt')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
