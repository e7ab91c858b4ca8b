"""Parameters and FLOPs of a detector or segmentor config, for the whole model and for its backbone.

    python tools/get_flops.py configs/mask_rcnn/convnext_t_3x.py               # 800x1280, as in the ConvNeXt paper
    python tools/get_flops.py configs/upernet/convnext_t_160k.py --shape 512 2048

FLOPs are counted by mmengine's analyzer (fvcore's convention: one multiply-add is one FLOP, as the ConvNeXt and Swin
papers report them) on one image of the given size, padded as the model's data preprocessor pads it. Detectors are
measured in ``tensor`` mode (RPN proposals, box head on all of them, mask head on the first 100), so their count
depends a little on how many proposals survive NMS with the weights at hand. The last line printed is
``complexity: {...}`` (JSON), for scripts.
"""
import argparse
import json
import sys
from functools import partial
from importlib import import_module

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  registers the backbone and the config fixes
from convnext_dense.tooling.runner_setup import SetupError, add_cfg_options_arg, load_config

# Published FLOPs are at 1280x800 for COCO detection and 2048x512 for ADE20K segmentation.
DEFAULT_SHAPES = dict(mmdet=(800, 1280), mmseg=(512, 2048))
DATA_SAMPLES = dict(mmdet='mmdet.structures.DetDataSample', mmseg='mmseg.structures.SegDataSample')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input image size (default: 800 1280 for mmdet configs, 512 2048 for mmseg configs)')
    add_cfg_options_arg(parser)
    return parser.parse_args()


def build_inputs(model: torch.nn.Module, scope: str, height: int, width: int) -> tuple:
    """One preprocessed image of the given size, with the metadata the model's heads read."""
    module, name = DATA_SAMPLES[scope].rsplit('.', 1)
    data_sample_type = getattr(import_module(module), name)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1., 1.))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[data_sample_type(metainfo=meta)]), False)
    return data['inputs'], data['data_samples']


def complexity(model: torch.nn.Module, inputs: torch.Tensor) -> dict:
    info = get_model_complexity_info(model, inputs=(inputs, ), show_table=False, show_arch=False)
    return dict(params=int(info['params']), flops=int(info['flops']))


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options)
    except SetupError as exc:
        sys.exit(f'error: {exc}')
    init_default_scope(cfg.default_scope)
    # Weights do not change the count: the backbone's pretrained checkpoint is not needed.
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    height, width = args.shape or DEFAULT_SHAPES[cfg.default_scope]
    inputs, data_samples = build_inputs(model, cfg.default_scope, height, width)
    with torch.no_grad():
        backbone = complexity(model.backbone, inputs)
        model.forward = partial(model.forward, data_samples=data_samples, mode='tensor')
        whole = complexity(model, inputs)
    padded = 'x'.join(str(s) for s in inputs.shape[-2:])
    print(f'{args.config}: input {height}x{width} (padded to {padded})')
    print(f'{"":10} {"params":>10} {"FLOPs":>10}')
    for name, counts in (('model', whole), ('backbone', backbone)):
        print(f'{name:10} {counts["params"] / 1e6:>9.2f}M {counts["flops"] / 1e9:>9.2f}G')
    print('complexity: ' + json.dumps(dict(config=args.config, input_shape=[height, width],
                                           padded_shape=list(inputs.shape[-2:]), model=whole, backbone=backbone)))


if __name__ == '__main__':
    main()
