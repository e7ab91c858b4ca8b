"""Show what each stage of the backbone emits for one image: its output maps (after their norms: what
``model.backbone(x)`` returns for the preprocessed image) as heat maps of their first principal component.

    python tools/analysis_tools/vis_features.py CONFIG IMAGE [--checkpoint CKPT] [--out FILE] [--device cpu]

Per map, the pixels' channel vectors are projected on their first principal component (the direction in which they
vary most; its sign chosen so that the rarer extreme is bright), over the part of the map that sees the image (not the
batch padding). The channel mean would show little: the output LayerNorms centre every pixel's channels. Without
--checkpoint the backbone is initialised as the config says (``model.backbone.init_cfg``: the ImageNet weights under
checkpoints/, or random weights where it has none). Prints a line per map (stage, stride, shape) and the PNG's path.
Configs that infer in sliding windows show the first window.
"""
import argparse
import sys
from pathlib import Path

from convnext_dense import CheckpointError  # the import registers the backbone; mmengine reads checkpoints weights-only
from convnext_dense.apis.inference import load_model, read_rgb
from convnext_dense.apis.runner_setup import (
    SetupError,
    add_cfg_options_arg,
    add_device_arg,
    load_config,
    require_checkpoint,
)
from convnext_dense.visualization.feature_maps import backbone_init, capture_backbone, plot_feature_maps, stage_maps


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--checkpoint', help='checkpoint of the whole model (e.g. from tools/train.py)')
    parser.add_argument('--out', help='PNG to write (default: features_<image name>.png)')
    add_device_arg(parser)
    add_cfg_options_arg(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options)
        if not Path(args.image).is_file():
            raise SetupError(f'image not found: {args.image}')
        image = read_rgb(Path(args.image))
        if args.checkpoint:
            require_checkpoint(args.checkpoint)
            init_cfg, weights = None, f'checkpoint: {Path(args.checkpoint).name}'
        else:
            init_cfg, weights = backbone_init(cfg)
    except SetupError as exc:
        sys.exit(f'error: {exc}')
    try:
        model = load_model(cfg, args.checkpoint, args.device)
        if init_cfg is not None:
            model.backbone.init_cfg = init_cfg
            model.backbone.init_weights()
    except CheckpointError as exc:
        sys.exit(f'error: {exc}')

    x, outputs, image_shape = capture_backbone(model, Path(args.image))
    maps = stage_maps(x, outputs, image_shape)
    for stage in maps:
        print(stage.describe())
    out = Path(args.out or f'features_{Path(args.image).stem}.png')
    plot_feature_maps(image, Path(args.image).name, x.shape[1:], maps,
                      f'{Path(args.config).name} ({weights}): backbone outputs, first principal component', out)
    print(out)


if __name__ == '__main__':
    main()
