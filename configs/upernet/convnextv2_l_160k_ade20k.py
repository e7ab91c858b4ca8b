# ConvNeXt V2-L, FCMAE pre-trained on ImageNet-1K, 512 crops. The paper's ADE20K UperNet table (arXiv 2301.00808, as
# indexed by Papers with Code) reports mIoU 53.7 for V2-L FCMAE; its settings are not published. Our choice: the V1
# recipe (drop path 0.4, lr 1e-4, stage-wise decay 0.9 / 12) with 512 crops for ImageNet-1K weights, and AMP.
_base_ = './_base_convnextv2_ade20k_512.py'
model = dict(
    backbone=dict(arch='large', init_cfg=dict(checkpoint='checkpoints/convnextv2_large_1k_224_fcmae.pt')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
