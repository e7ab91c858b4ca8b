"""Parameters and FLOPs of a detector or segmentor config, counted as the ConvNeXt and Swin papers counted them.

    python tools/analysis_tools/get_flops.py configs/cascade_rcnn/convnext_t_3x.py      # 1280x800, as published
    python tools/analysis_tools/get_flops.py configs/upernet/convnext_t_160k_ade20k.py  # 2048x512 (2560x640: 640 crops)
    python tools/analysis_tools/get_flops.py configs/mask_rcnn/convnext_t_3x.py --shape 800 1333

The count is mmdet 2.x / mmseg 0.x ``forward_dummy`` (convnext_dense/analysis/flops.py says exactly what runs: e.g.
box heads on 1000 RoIs and mask heads on 100, not inference after NMS) traced by mmengine's analyzer, where one
multiply-add is one FLOP. DINO and Mask2Former, which had none, count their inference forward before post-processing,
as their papers did (Mask2Former on ADE20K at one crop, 512x512). The output says which parts were counted, params
and FLOPs per part, the ops left uncounted, and the published figures when the config is one of the paper's. The last
line printed is ``complexity: {...}`` (JSON).
"""
import argparse
import json
import sys

import convnext_dense  # noqa: F401  registers the backbone and the config fixes
from convnext_dense.analysis.flops import count_config, default_shape, official_figures
from convnext_dense.apis.runner_setup import SetupError, add_cfg_options_arg, load_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input image size (default: 1280 800 for mmdet configs; for mmseg configs 4 crop '
                        'heights by 1 crop width, i.e. 2048 512 for 512 crops and 2560 640 for 640 crops, and one '
                        'crop for Mask2Former)')
    add_cfg_options_arg(parser)
    args = parser.parse_args()
    if args.shape is not None and min(args.shape) < 32:
        parser.error(f'--shape must be at least 32x32, got {args.shape[0]}x{args.shape[1]}')
    return args


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options)
        height, width = args.shape or default_shape(cfg)
        count = count_config(cfg, (height, width))
    except (SetupError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    official = official_figures(args.config)

    print(f'{args.config}: input {height}x{width} (padded to {count.shape[0]}x{count.shape[1]})')
    print(f'counted: {count.counted}')
    print(f'{"":22} {"params":>10} {"FLOPs":>10}')
    print(f'{"model":22} {count.params / 1e6:>9.2f}M {count.flops / 1e9:>9.2f}G')
    for part, counts in count.parts.items():
        print(f'  {part:20} {counts["params"] / 1e6:>9.2f}M {counts["flops"] / 1e9:>9.2f}G')
    if official:
        print(f'published: {official["params_m"]}M params, {official["gflops"]}G FLOPs '
              f'(ours {100 * (count.flops / 1e9 / official["gflops"] - 1):+.1f}%)')
    print('not counted (element-wise and unknown ops): '
          + (', '.join(f'{op} x{n}' for op, n in sorted(count.uncounted_ops.items())) or 'none'))
    print('complexity: ' + json.dumps(dict(
        config=args.config, input_shape=[height, width], padded_shape=list(count.shape), counted=count.counted,
        model=dict(params=count.params, flops=count.flops), backbone=count.parts['backbone'], parts=count.parts,
        uncounted_ops=count.uncounted_ops, official=official)))


if __name__ == '__main__':
    main()
