# ConvNeXt V2-H, FCMAE pre-trained on ImageNet-1K. No published V2 Cascade recipe or result: our choice, the official
# recipe of the largest V1 (XL: drop path 0.8, lr 1e-4, layer-wise decay 0.7 over 12 layers, 3x) but with AMP (our
# LayerNorm and GRN are fp16-safe; a 660M-parameter backbone needs the memory).
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='huge', drop_path_rate=0.8,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_huge_1k_224_fcmae.pt')),
    neck=dict(in_channels=[352, 704, 1408, 2816]))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
