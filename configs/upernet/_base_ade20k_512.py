# ADE20K with 512x512 crops (ImageNet-1K recipes), batch 2 img/GPU; single-scale test by sliding 512 windows.
_base_ = ['./_base_convnext_upernet.py', 'mmseg::_base_/datasets/ade20k.py']
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
train_dataloader = dict(batch_size=2)
