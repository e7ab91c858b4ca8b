# Mask2Former with a ConvNeXt backbone on ADE20K: mmseg's Mask2Former R-50 160k config (512x512 crops, batch 2 x 8 GPUs,
# 160k iterations of poly (power 0.9) decay, 100 queries, whole-image test, fp32) with the recipe of its Swin-T
# counterpart (mmseg configs/mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py). No Mask2Former ConvNeXt-T/B
# recipe or result has been published (the Mask2Former paper and repo use ResNet and Swin; OneFormer's ConvNeXt-L/XL
# configs use drop path 0.4 and the backbone at 0.1x lr without layer decay).
# The host's / Swin recipe: AdamW lr 1e-4, weight decay 0.05, the backbone at 0.1x lr, no weight decay on norms nor on
# query_embed / query_feat / level_embed, gradient clipping at 0.01, ImageNet-1K weights at 224 (official release names,
# expected under checkpoints/).
# Our choice, from the official ConvNeXt UperNet recipe (convnext_dense/host_configs/recipes.py): drop path 0.4 for T
# and B (Swin-T: 0.3); stage-wise lr decay 0.9 over 6 (T) / 12 (B) layers, multiplied by the backbone's 0.1; no weight
# decay on 1-D parameters and biases (the official ConvNeXt rule, which the layer-decay constructor applies to the
# whole model: the host decays the heads' biases).
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdet.models', 'convnext_dense'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,  # the pretrained weights replace it
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_1k_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]))

# The host's AdamW, clip_grad, custom_keys and norm_decay_mult, with layer decay under them.
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
