"""Convert a ConvNeXt checkpoint (official, mmpretrain or timm layout) into this package's backbone format.

    python tools/convert_checkpoint.py convnext_tiny_22k_224.pth checkpoints/convnext_tiny_22k_dense.pth

The output holds ``state_dict`` with the backbone's own keys (the official layout: ``downsample_layers.i``,
``stages.i.j``, ``norm3`` from the classifier's final norm) and ``meta`` (source file and format); the classification
head is dropped. Use it as ``init_cfg=dict(type='Pretrained', checkpoint=DST)``; the originals load there as well, this
just does the conversion once and leaves a small file that loads with ``weights_only=True``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from convnext_dense.models.checkpoint import CheckpointError, LoadReport, safe_load, to_backbone_state_dict


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='load SRC with weights_only=False: only for files from a source you trust, since '
                             'unpickling arbitrary objects can run code')
    return parser.parse_args()


def convert(src: str, dst: str, weights_only: bool = True) -> LoadReport:
    if osp.abspath(src) == osp.abspath(dst):
        raise CheckpointError(f'{dst}: the output would overwrite the input; give another path')
    report = LoadReport(source=src, format='unknown')
    state_dict = to_backbone_state_dict(safe_load(src, weights_only=weights_only), report)
    report.loaded = sorted(state_dict)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=dict(source=osp.basename(src), format=report.format)), dst)
    return report


def main():
    args = parse_args()
    try:
        report = convert(args.src, args.dst, weights_only=not args.unsafe_load)
    except (CheckpointError, FileNotFoundError) as exc:
        unsafe_hint = ' (here: --unsafe-load)' if 'weights_only=False' in str(exc) else ''
        sys.exit(f'error: {exc}{unsafe_hint}')
    print(report.summary().replace('loaded', 'converted', 1))
    print(f'wrote {args.dst}')


if __name__ == '__main__':
    main()
