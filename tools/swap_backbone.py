"""Put ConvNeXt into any mmdet / mmseg model config: writes a short config, the host plus a commented delta.

    python tools/swap_backbone.py mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py --arch tiny \\
        --pretrained checkpoints/convnext_tiny_1k_224.pth --out configs/my/dino_convnext_t.py
    python tools/swap_backbone.py mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py --arch base --version 2

The backbone returns exactly the stages the neck or heads read; their channel, index and stride fields follow it;
the data preprocessor takes ImageNet RGB mean/std; the optimizer becomes AdamW with layer-wise decay as the official
ConvNeXt recipes, keeping the host's lr_mult keys, clip_grad and norm / bias decay. See convnext_dense/host_configs.
"""
import argparse
import os
import os.path as osp
import sys

import convnext_dense  # noqa: F401  registers the backbone and the optimizer constructor
from convnext_dense.host_configs import HostConfigError, plan_swap, write_swap
from convnext_dense.models.backbones.convnext import ARCHS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('host', help='host config: a path, or mmdet::PATH / mmseg::PATH in the installed package')
    parser.add_argument('--arch', default='tiny', choices=list(ARCHS), help='ConvNeXt size (default: tiny)')
    parser.add_argument('--version', type=int, default=1, choices=(1, 2), help='ConvNeXt V1 or V2 (default: 1)')
    parser.add_argument('--pretrained', help='ImageNet checkpoint of the backbone (official, mmpretrain or timm)')
    parser.add_argument('--drop-path-rate', type=float, help='default: the official recipe for the size')
    parser.add_argument('--layer-decay', type=float, help='decay rate; default: the official recipe for the task')
    parser.add_argument('--out', help='config to write (default: work_dirs/swapped/<host>_convnext_<arch>.py)')
    return parser.parse_args()


def main():
    args = parse_args()
    out = args.out or osp.join('work_dirs', 'swapped', f'{osp.splitext(osp.basename(args.host.split("::")[-1]))[0]}'
                               f'_convnext{"v2" if args.version == 2 else ""}_{args.arch}.py')
    try:
        plan = plan_swap(args.host, args.arch, args.version, args.pretrained, args.drop_path_rate, args.layer_decay)
    except (HostConfigError, ValueError) as error:
        sys.exit(f'error: {args.host}: {error}')
    if args.pretrained and not osp.isfile(args.pretrained):
        print(f'note: {args.pretrained} does not exist yet; training will stop until it does', file=sys.stderr)
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    with open(write_swap(plan, out)) as f:
        print(f.read())
    print(f'wrote {out}; train it with: python tools/train.py {out}')


if __name__ == '__main__':
    main()
