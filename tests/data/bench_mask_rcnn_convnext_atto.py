# Tiny Mask R-CNN with ConvNeXt-atto for the benchmark smoke tests. The backbone's Pretrained init_cfg names a file that
# does not exist and the neck uses SyncBN: the tools must drop the one and revert the other to run at all.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
default_scope = 'mmdet'
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
width = 32
model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/not-downloaded.pth')),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=width, norm_cfg=dict(type='SyncBN')),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=64, num_classes=8),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_convs=1, in_channels=width, conv_out_channels=width, num_classes=8)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)))
optim_wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
