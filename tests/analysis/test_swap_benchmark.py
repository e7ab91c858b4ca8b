"""The swap benchmark times the swap tool in fresh processes, reports failures with the tool's own error line, and
exits 1 when a swap fails."""
import json
import subprocess
import sys

from conftest import REPO

from convnext_dense.host_configs.families import HOST_FAMILIES

TOOL = REPO / 'tools/analysis_tools/benchmark_swap.py'


def test_times_each_host_and_names_failures(tmp_path):
    good = HOST_FAMILIES['retinanet'][0]
    bad = 'mmseg::setr/setr_vit-l-mla_8xb1-160k_ade20k-512x512.py'
    run = subprocess.run([sys.executable, str(TOOL), good, bad, '--arch', 'atto', '--out-dir', str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1, run.stderr  # the SETR host cannot take ConvNeXt
    payload = json.loads((tmp_path / 'benchmark_swap.json').read_text())
    first, second = payload['results']
    assert first['name'] == good and first['status'] == 'ok' and 0 < first['seconds'] < 120
    assert second['status'] == 'failed' and 'plain ViT' in second['error']
    assert (tmp_path / 'configs' / '00_retinanet_r50_fpn_1x_coco.py').is_file()
    assert 'promised under 10 s per config' in run.stdout and good in run.stdout
