"""Cascade Mask R-CNN with ConvNeXt-atto on the synthetic shapes (tools/misc/make_demo_data.py), trained and evaluated
on a CPU.

mmdet's Cascade Mask R-CNN model with our backbone (random init), a 64-channel neck and heads and fewer proposals, on
the data and schedule of ``_base_shapes_coco.py``. Longer runs learn more: --cfg-options train_cfg.max_epochs=N.
"""
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', './_base_shapes_coco.py']

channels = _base_.channels  # 64 (256 in the real configs)
model = dict(
    backbone=dict(_delete_=True, type='ConvNeXt', arch='atto', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    neck=dict(in_channels=[40, 80, 160, 320], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=[
            dict(stage_head, in_channels=channels, fc_out_channels=256, num_classes=_base_.num_classes)
            for stage_head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels, num_classes=_base_.num_classes)),
    # At most 4 shapes per image: a few hundred proposals and 20 detections are plenty.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=[dict(stage, sampler=dict(stage.sampler, num=128)) for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))
