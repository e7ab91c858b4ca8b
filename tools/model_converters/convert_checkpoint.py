"""Convert a ConvNeXt checkpoint into this package's format: a backbone (official, mmpretrain, timm or Hugging Face
layout) or a whole detector / segmentor (official mmdet 2.x / mmseg 0.x releases, mmdet / mmseg model-zoo files,
Hugging Face UperNet folders or files).

    python tools/model_converters/convert_checkpoint.py convnext_tiny_22k_224.pth checkpoints/convnext_t_22k_dense.pth
    python tools/model_converters/convert_checkpoint.py upernet_convnext_tiny_1k_512x512.pth checkpoints/upernet_t.pth
    python tools/model_converters/convert_checkpoint.py path/to/hf/upernet-convnext-tiny checkpoints/upernet_t_hf.pth

A backbone becomes ``state_dict`` with the backbone's own keys (the official layout: ``downsample_layers.i``,
``stages.i.j``) and ``meta`` (source file and format), the classification head dropped: use it as
``init_cfg=dict(type='Pretrained', checkpoint=DST)``. A whole model becomes ``state_dict`` under our configs' names
and ``meta.dataset_meta`` (its classes), the layout mmdet 3.x / mmseg 1.x write: stock tools (mmdet's and mmseg's
tools/test.py, ``init_detector``, ``load_from``) load it into our configs. Our tools load the originals as well; this
does the conversion once and leaves a file that loads with ``weights_only=True``.
"""
import argparse
import os
import sys

from convnext_dense.checkpoint.conversion import convert
from convnext_dense.checkpoint.reading import CheckpointError
from convnext_dense.patches import UNSAFE_LOAD_ENV


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (a file, or a Hugging Face save_pretrained folder)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='load SRC with weights_only=False: only for files from a source you trust, since '
                             'unpickling arbitrary objects can run code')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.unsafe_load:
        os.environ[UNSAFE_LOAD_ENV] = '1'  # read by the checkpoint loader that import convnext_dense installs
    try:
        report = convert(args.src, args.dst)
    except (CheckpointError, FileNotFoundError) as exc:
        unsafe_hint = ' (here: --unsafe-load)' if 'weights_only=False' in str(exc) or 'unsafe-load' in str(exc) else ''
        sys.exit(f'error: {exc}{unsafe_hint}')
    print(report.summary().replace('loaded', 'converted', 1))
    print(f'wrote {args.dst}')


if __name__ == '__main__':
    main()
