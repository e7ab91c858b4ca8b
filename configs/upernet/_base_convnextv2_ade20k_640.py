# UperNet with a ConvNeXt V2 backbone on ADE20K with 640x640 crops, for the ImageNet-22K fine-tuned weights (as the
# V1 22K recipes): the V1 recipe with version=2; the sizes set arch, lr, num_layers, head channels and the file
# (official release names convnextv2_{size}_22k_{224,384}_ema.pt, expected under checkpoints/).
_base_ = './_base_ade20k_640.py'
model = dict(backbone=dict(version=2, layer_scale_init_value=0.))
