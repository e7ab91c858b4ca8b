# ConvNeXt V2-H, FCMAE pre-trained on ImageNet-1K, 512 crops. The paper's ADE20K UperNet table (arXiv 2301.00808, as
# indexed by Papers with Code) reports mIoU 55.0 for V2-H FCMAE; its settings are not published. Our choice: the V1
# recipe of the largest model (XL: drop path 0.4, lr 8e-5, stage-wise decay 0.9 / 12) with 512 crops, and AMP.
_base_ = './_base_convnextv2_ade20k_512.py'
model = dict(
    backbone=dict(arch='huge', init_cfg=dict(checkpoint='checkpoints/convnextv2_huge_1k_224_fcmae.pt')),
    decode_head=dict(in_channels=[352, 704, 1408, 2816]),
    auxiliary_head=dict(in_channels=1408))
optim_wrapper = dict(optimizer=dict(lr=8e-5), paramwise_cfg=dict(num_layers=12))
