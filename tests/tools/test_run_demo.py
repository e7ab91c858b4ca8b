"""tools/run_demo.sh, the README's first command, runs the whole demo (data, training, testing) and prints the
metrics of both models, then pictures of their predictions."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]


def test_run_demo_script_end_to_end(tmp_path):
    # A small data set already in place (the script writes the default one only when none is there), short runs.
    subprocess.run([sys.executable, str(REPO / 'tools' / 'misc' / 'make_demo_data.py'), '--num-train', '8',
                    '--num-val', '4'], cwd=tmp_path, check=True, capture_output=True)
    env = dict(os.environ, PYTHON=sys.executable, DET_EPOCHS='1', SEG_ITERS='4', SEED='7', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run([str(REPO / 'tools' / 'run_demo.sh'), 'work'], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r'^mask_rcnn +coco/bbox_mAP=\d\.\d{3}  coco/bbox_mAP_50=\d\.\d{3}  coco/segm_mAP=\d\.\d{3}', out,
                     re.M), out
    assert re.search(r'^upernet +mIoU=\d+\.\d{3}  mAcc=\d+\.\d{3}  aAcc=\d+\.\d{3}', out, re.M), out
    # progress while training: mmengine's lines, shortened; the logs keep them whole, and the seed
    assert re.search(r'^   Epoch\(train\) \[1\]\[2/2\]  eta: [\d:]+  loss: \d', out, re.M), out
    assert re.search(r'^   Epoch\(val\) \[1\]\[1/1\]  coco/bbox_mAP: \d', out, re.M), out
    assert re.search(r'^   Iter\(val\) \[4/4\]  aAcc: \d', out, re.M), out
    assert all(len(line) <= 160 for line in out.splitlines() if line.startswith('   '))
    for name in ('mask_rcnn', 'upernet'):
        log = (tmp_path / 'work' / f'{name}.train.log').read_text()
        assert 'data_time: ' in log and 'randomness = dict(seed=7)' in log
    assert (tmp_path / 'work' / 'mask_rcnn' / 'epoch_1.pth').is_file()
    assert (tmp_path / 'work' / 'upernet' / 'iter_4.pth').is_file()
    assert len(list((tmp_path / 'data' / 'demo' / 'coco' / 'train2017').glob('*.jpg'))) == 8  # left as it was
    # it ends by drawing predictions, curves and feature maps, and prints their paths
    pngs = re.findall(r'^(\S+\.png)$', out, re.M)
    assert len(pngs) == 10 and all((tmp_path / p).is_file() for p in pngs), out


def test_a_failing_training_shows_its_progress_as_it_comes_and_its_log_tail_and_stops_the_demo(tmp_path):
    # A stand-in for Python that prints one of mmengine's training lines, works on, then fails as a crashed train.py
    # would.
    (tmp_path / 'data/demo/coco/annotations').mkdir(parents=True)
    (tmp_path / 'data/demo/coco/annotations/instances_val2017.json').write_text('{}')
    (tmp_path / 'data/demo/ade/ADEChallengeData2016').mkdir(parents=True)
    line = ('09/25 10:00:00 - mmengine - INFO - Epoch(train)  [1][10/20]  base_lr: 1.0000e-03 lr: 1.0000e-03  '
            'eta: 0:01:07  time: 0.5000  data_time: 0.0100  memory: 0  loss: 2.5000  loss_cls: 1.0000')
    fake = tmp_path / 'python'
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >&2\necho "{line}"\nsleep 3\necho "RuntimeError: boom" >&2\n'
                    'exit 3\n')
    fake.chmod(0o755)
    demo = subprocess.Popen([str(REPO / 'tools' / 'run_demo.sh'), 'work'], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHON=str(fake), SEED='3'))
    start = time.monotonic()
    header, progress = demo.stdout.readline(), demo.stdout.readline()
    shown_while_training = time.monotonic() - start < 2.5  # before the 3 s of "training" after the line were over
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 1 and header.startswith('== mask_rcnn: training')
    assert progress == '   Epoch(train)  [1][10/20]  eta: 0:01:07  loss: 2.5000  loss_cls: 1.0000\n'
    assert shown_while_training
    assert line in rest and 'RuntimeError: boom' in rest and 'randomness.seed=3' in rest
    assert 'testing' not in rest
    assert (tmp_path / 'work/mask_rcnn.train.log').read_text().count(line) == 1
