"""Write a small synthetic COCO instance set and an ADE20K-layout segmentation set: every tool runs with no downloads.

Images show circles, squares and triangles, randomly rotated, on a textured grey background; each class has its own
range of hues (reds, greens, blues), so the demo models learn to tell the classes apart within minutes on a CPU.
Output (deterministic for a given --seed)::

    OUT/coco/annotations/instances_{train,val}2017.json   COCO instances: polygon segmentation, bbox, area, iscrowd
    OUT/coco/{train,val}2017/*.jpg
    OUT/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/*.png

The segmentation maps follow ADE20K's convention for ``reduce_zero_label=True``: 0 is unlabelled (a one-pixel seam
around every shape, ignored in training and evaluation), 1 the background, 2..4 circle, square and triangle.
"""
import argparse
from pathlib import Path

from convnext_dense.datasets.synthetic_shapes import CLASSES, SEG_CLASSES, write_synthetic_shapes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo', help='output folder (default: data/demo)')
    parser.add_argument('--seed', type=int, default=0, help='random seed; the same seed writes the same files')
    parser.add_argument('--num-train', type=int, default=80, help='training images per data set')
    parser.add_argument('--num-val', type=int, default=20, help='validation images per data set')
    args = parser.parse_args()
    if args.num_train < 1 or args.num_val < 1:
        parser.error('--num-train and --num-val must be at least 1')
    return args


def main():
    args = parse_args()
    out = Path(args.out)
    counts = write_synthetic_shapes(out, args.seed, args.num_train, args.num_val)
    print(f'wrote {out}/coco: train {counts["train"][0]} images / {counts["train"][1]} instances, '
          f'val {counts["val"][0]} images / {counts["val"][1]} instances; classes {", ".join(CLASSES)}')
    print(f'wrote {out}/ade/ADEChallengeData2016: {args.num_train} training and {args.num_val} validation images; '
          f'labels 0 = unlabelled, {", ".join(f"{i + 1} = {c}" for i, c in enumerate(SEG_CLASSES))}')


if __name__ == '__main__':
    main()
