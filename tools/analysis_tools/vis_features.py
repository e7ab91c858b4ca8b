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
import copy
import math
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use('Agg')  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

# Model loading and inference shared with tools/misc/image_demo.py.
from convnext_dense import CheckpointError  # noqa: E402
from convnext_dense.apis.inference import load_model, predict, read_rgb  # noqa: E402
from convnext_dense.apis.runner_setup import (SetupError, add_cfg_options_arg, load_config,  # noqa: E402
                                                require_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--checkpoint', help='checkpoint of the whole model (e.g. from tools/train.py)')
    parser.add_argument('--out', help='PNG to write (default: features_<image name>.png)')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='device to run the model on (default: cuda:0 if there is a GPU, else cpu)')
    add_cfg_options_arg(parser)
    return parser.parse_args()


def backbone_init(cfg) -> tuple:
    """The backbone's init_cfg (the inference APIs drop it) and a description of the weights it gives."""
    init_cfg = copy.deepcopy(cfg.model.backbone.get('init_cfg'))
    if not init_cfg or init_cfg.get('type') != 'Pretrained':
        return None, 'random weights'
    path = str(init_cfg.checkpoint)
    if '://' in path:
        raise SetupError(f'model.backbone.init_cfg loads {path}, a download; put the file under checkpoints/ and give '
                         'its path with --cfg-options model.backbone.init_cfg.checkpoint=PATH (this tool does not '
                         'download), or give --checkpoint')
    if not Path(path).is_file():
        raise SetupError(f'pretrained checkpoint not found: {path} (model.backbone.init_cfg); download it (see the '
                         'README), give a trained model with --checkpoint, or look at random weights with '
                         '--cfg-options model.backbone.init_cfg=None')
    return init_cfg, f'pretrained backbone: {Path(path).name}'


def capture_backbone(model, image_path: Path) -> tuple:
    """(backbone input, backbone outputs, the image's shape after resizing) of the first backbone call of one
    inference."""
    calls = []
    handle = model.backbone.register_forward_hook(lambda module, args, output: calls.append((args[0], output)))
    try:
        with torch.no_grad():
            result = predict(model, image_path)
    finally:
        handle.remove()
    x, outputs = calls[0]
    return x, tuple(outputs), result.metainfo['img_shape'][:2]


def stride_of(input_size: int, output_size: int) -> int:
    """The power of two ``s`` with ``ceil(input_size / s) == output_size`` (smallest if several): the backbone pads
    what a stride does not divide."""
    stride = 1
    while math.ceil(input_size / stride) > output_size:
        stride *= 2
    return stride


def first_component(feature: torch.Tensor) -> tuple:
    """(H x W map of the first principal component, share of the variance it explains) of a C x H x W map."""
    channels, height, width = feature.shape
    pixels = feature.reshape(channels, -1).T.double()
    pixels = pixels - pixels.mean(0)
    u, s, _ = torch.linalg.svd(pixels, full_matrices=False)
    component = u[:, 0] * s[0]
    if (component ** 3).sum() < 0:  # the sign of a component is arbitrary: put the long tail on the bright side
        component = -component
    explained = float(s[0] ** 2 / (s ** 2).sum()) if s.abs().sum() > 0 else 0.0
    return component.reshape(height, width).float(), explained


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

    x, outputs, (img_h, img_w) = capture_backbone(model, Path(args.image))
    fig, axes = plt.subplots(1, len(outputs) + 1, figsize=(3.2 * (len(outputs) + 1), 3.6), squeeze=False)
    axes[0][0].imshow(image)
    axes[0][0].set_title(f'input {Path(args.image).name}\n{tuple(x.shape[1:])} to the backbone', fontsize=9)
    for i, (ax, feature) in enumerate(zip(axes[0][1:], outputs), 1):
        channels, height, width = feature.shape[1:]
        stride = stride_of(x.shape[2], height)
        # The part of the map over the resized image; the rest sees only the padding of the batch.
        visible = feature[0, :, :min(height, math.ceil(img_h / stride)), :min(width, math.ceil(img_w / stride))]
        heat, explained = first_component(visible.cpu())
        ax.imshow(heat.numpy(), cmap='inferno', interpolation='nearest')
        ax.set_title(f'stage {i}: stride {stride}\n{channels} x {height} x {width}, PC1 {explained:.0%} of var.',
                     fontsize=9)
        print(f'stage {i}: stride {stride}, {channels} x {height} x {width} (C x H x W)')
    for ax in axes[0]:
        ax.set_axis_off()
    fig.suptitle(f'{Path(args.config).name} ({weights}): backbone outputs, first principal component', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))  # room for the suptitle, which tight_layout leaves out
    out = Path(args.out or f'features_{Path(args.image).stem}.png')
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(out)


if __name__ == '__main__':
    main()
