# ADE20K with 640x640 crops (ImageNet-22K recipes), batch 2 img/GPU; single-scale test by sliding 640 windows.
_base_ = ['./_base_convnext_upernet.py', 'mmseg::_base_/datasets/ade20k_640x640.py']
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))
train_dataloader = dict(batch_size=2)
