"""tools/run_demo.sh, the README's first command, runs the whole demo (data, training, testing) and prints the
metrics of both models, then pictures of their predictions."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]


def test_run_demo_script_end_to_end(tmp_path):
    # A small data set already in place (the script writes the default one only when none is there), short runs.
    subprocess.run([sys.executable, str(REPO / 'tools' / 'make_demo_data.py'), '--num-train', '8', '--num-val', '4'],
                   cwd=tmp_path, check=True, capture_output=True)
    env = dict(os.environ, PYTHON=sys.executable, DET_EPOCHS='1', SEG_ITERS='4', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run([str(REPO / 'tools' / 'run_demo.sh'), 'work'], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r'^mask_rcnn +coco/bbox_mAP=\d\.\d{3}  coco/bbox_mAP_50=\d\.\d{3}  coco/segm_mAP=\d\.\d{3}', out,
                     re.M), out
    assert re.search(r'^upernet +mIoU=\d+\.\d{3}  mAcc=\d+\.\d{3}  aAcc=\d+\.\d{3}', out, re.M), out
    assert (tmp_path / 'work' / 'mask_rcnn' / 'epoch_1.pth').is_file()
    assert (tmp_path / 'work' / 'upernet' / 'iter_4.pth').is_file()
    assert len(list((tmp_path / 'data' / 'demo' / 'coco' / 'train2017').glob('*.jpg'))) == 8  # left as it was
    # it ends by drawing predictions, curves and feature maps, and prints their paths
    pngs = re.findall(r'^(\S+\.png)$', out, re.M)
    assert len(pngs) == 10 and all((tmp_path / p).is_file() for p in pngs), out
