# ConvNeXt V2-L, FCMAE pre-trained on ImageNet-1K. No published V2 Cascade recipe or result: our choice, the official
# V1-L Cascade recipe (drop path 0.7, lr 1e-4, layer-wise decay 0.7 over 12 layers, 3x) but with AMP (our LayerNorm
# and GRN are fp16-safe; V1's recipe turned AMP off for its hand-written LayerNorm).
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_large_1k_224_fcmae.pt')),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
