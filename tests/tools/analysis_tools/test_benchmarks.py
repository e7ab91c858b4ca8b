"""The benchmark tools run end to end on CPU: tiny Mask R-CNN and UperNet configs, each in its own process, a small
shape and 2 timed iterations, giving the table, valid JSON and a PNG chart. No numbers are asserted beyond sanity:
speed and memory are for the tools to report, not for tests to judge."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[3]
DETECTION = 'tests/data/bench_mask_rcnn_convnext_atto.py'
SEGMENTATION = 'tests/data/bench_upernet_convnext_atto.py'
SMALL_RUN = ['--shape', '128', '160', '--batch-size', '2', '--iters', '2', '--warmup', '1', '--device', 'cpu']


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f'tools/analysis_tools/{tool}.py', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope='module')
def memory_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('memory')
    proc = run_tool('benchmark_memory', DETECTION, SEGMENTATION, *SMALL_RUN, '--out-dir', str(out_dir),
                    '--cfg-options', 'model.backbone.with_cp=True')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, out_dir


@pytest.fixture(scope='module')
def speed_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('speed')
    proc = run_tool('benchmark_speed', DETECTION, SEGMENTATION, *SMALL_RUN, '--out-dir', str(out_dir),
                    '--cfg-options', 'model.backbone.channels_last=True')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, out_dir


def check_common(payload: dict, tool: str):
    assert payload['tool'] == tool
    assert payload['device'] == 'cpu' and payload['device_name'].startswith('CPU')
    assert payload['torch'] == torch.__version__
    assert payload['memory_metric'] == 'cpu_peak_rss'
    assert payload['settings']['shape'] == [128, 160] and payload['settings']['iters'] == 2
    results = payload['results']
    assert [r['config'] for r in results] == [DETECTION, SEGMENTATION]
    assert [r['task'] for r in results] == ['detection', 'segmentation']
    for r in results:
        assert r['status'] == 'ok' and r['error'] is None
        assert r['env']['device'] == 'cpu'
        assert r['peak_rss_mib'] > 100  # a process holding torch, mmdet and a model
        assert r['params_m'] > 1
        assert r['image_shape'] == [128, 160]
        # The Pretrained init_cfg of the detection config is dropped: benchmarks never read checkpoints.
        assert r['backbone_cfg']['type'] == 'ConvNeXt' and 'init_cfg' not in r['backbone_cfg']
        assert not any(key.endswith('_peak_allocated_gib') for key in r), 'no GPU numbers on a CPU run'
    return results


def check_files(out_dir: Path, stem: str, stdout: str):
    assert (out_dir / f'{stem}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = (out_dir / f'{stem}.txt').read_text()
    assert table.strip() in stdout
    assert 'CPU RUN' in table and f'torch {torch.__version__}' in table
    for name in ('bench_mask_rcnn_convnext_atto', 'bench_upernet_convnext_atto'):
        assert any(line.startswith(name) and '| ok ' in line for line in table.splitlines())


def test_memory_benchmark_reports_each_config(memory_run):
    stdout, out_dir = memory_run
    results = check_common(json.loads((out_dir / 'benchmark_memory.json').read_text()), 'benchmark_memory')
    for r in results:
        assert r['backbone_cfg']['with_cp'] is True, '--cfg-options must reach every config'
        assert r['launcher'] == 'pytorch', 'one GPU of a distributed run by default (DDP in a one-process group)'
        assert r['amp_requested'] is True and r['precision'].startswith('fp32'), 'AMP needs CUDA: CPU runs fp32'
        assert r['input_shape'] == [2, 3, 128, 160]
        assert len(r['step_times_s']) == 2 and all(t > 0 for t in r['step_times_s'])
        assert r['step_median_s'] > 0 and r['throughput_img_s'] == pytest.approx(2 / r['step_median_s'])
    check_files(out_dir, 'benchmark_memory', stdout)
    assert 'peak RSS (MiB)' in stdout and 'throughput (img/s)' in stdout


def test_speed_benchmark_reports_each_config(speed_run):
    stdout, out_dir = speed_run
    results = check_common(json.loads((out_dir / 'benchmark_speed.json').read_text()), 'benchmark_speed')
    for r in results:
        assert r['backbone_cfg']['channels_last'] is True
        assert r['backbone_precision'] == 'fp32' and r['compiled'] is False
        assert r['inference_fps'] == pytest.approx(1 / r['inference_median_s'])
        assert r['backbone_input_shape'] == [2, 3, 128, 160]
        for key in ('inference', 'backbone_forward', 'backbone_train'):
            assert len(r[f'{key}_times_s']) == 2 and r[f'{key}_median_s'] > 0
        assert 0 < r['backbone_params_m'] < r['params_m']
    check_files(out_dir, 'benchmark_speed', stdout)
    assert 'inference FPS' in stdout and 'bb fwd+bwd (ms)' in stdout


def test_speed_benchmark_times_onnxruntime_beside_eager(tmp_path):
    """--onnx: the config's model exported to a temporary file (checked against PyTorch) and timed in onnxruntime
    beside the same module in PyTorch eager, both with the threads asked for, and beside a dynamic-shape export on the
    same image; the backbone parts are left out."""
    pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')
    proc = run_tool('benchmark_speed', SEGMENTATION, '--onnx', '--threads', '1', '--shape', '64', '96', '--iters', '1',
                    '--warmup', '0', '--device', 'cpu', '--out-dir', str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = json.loads((tmp_path / 'benchmark_speed.json').read_text())
    assert payload['settings']['onnx'] is True and payload['settings']['threads'] == 1
    r, = payload['results']
    assert r['status'] == 'ok' and r['onnx_threads'] == 1 and r['onnx_precision'] == 'fp32'
    assert len(r['onnx_eager_times_s']) == len(r['onnx_ort_times_s']) == 1
    assert r['onnx_eager_median_s'] > 0 and r['onnx_ort_median_s'] > 0
    assert r['onnx_ort_over_eager'] == pytest.approx(r['onnx_ort_median_s'] / r['onnx_eager_median_s'])
    assert len(r['onnx_dynamic_times_s']) == 1 and r['onnx_dynamic_median_s'] > 0  # a dynamic export, same image
    assert r['onnx_fixed_over_dynamic'] == pytest.approx(r['onnx_ort_median_s'] / r['onnx_dynamic_median_s'])
    assert r['onnx_parity'] and r['onnx_parity'][0].startswith('64x96: logits')
    assert 'backbone_forward_median_s' not in r
    assert not list(tmp_path.glob('**/*.onnx')), 'the graph goes to a temporary file'
    line, = (line for line in proc.stdout.splitlines() if line.startswith('bench_upernet_convnext_atto'))
    assert f"{r['onnx_eager_median_s'] * 1e3:.1f}" in line and f"{r['onnx_ort_median_s'] * 1e3:.1f}" in line
    assert 'eager graph (ms)' in proc.stdout and 'ORT / eager' in proc.stdout and 'fixed / dynamic' in proc.stdout


def test_onnx_timing_needs_the_cpu(tmp_path):
    proc = run_tool('benchmark_speed', SEGMENTATION, '--onnx', '--device', 'cuda', '--out-dir', str(tmp_path))
    assert proc.returncode == 2 and '--device' in proc.stderr


def test_missing_config_is_refused_before_any_work(tmp_path):
    proc = run_tool('benchmark_memory', 'configs/no_such_config.py', '--out-dir', str(tmp_path))
    assert proc.returncode == 2
    assert 'config file(s) not found: configs/no_such_config.py' in proc.stderr
    assert not list(tmp_path.iterdir())


def test_a_failing_config_is_reported_and_fails_the_run(tmp_path):
    config = tmp_path / 'no_scope.py'
    config.write_text("model = dict(type='MaskRCNN', backbone=dict(type='ConvNeXt'))\n")
    proc = run_tool('benchmark_speed', str(config), *SMALL_RUN, '--out-dir', str(tmp_path / 'out'))
    assert proc.returncode == 1
    assert 'FAILED: SetupError' in proc.stdout and "default_scope='mmdet' or 'mmseg'" in proc.stdout
    result, = json.loads((tmp_path / 'out' / 'benchmark_speed.json').read_text())['results']
    assert result['status'] == 'failed' and 'default_scope' in result['error']
    assert (tmp_path / 'out' / 'logs' / 'no_scope.log').read_text().count('Traceback') == 1


def test_gpu_results_are_reported_as_gpu_memory(tmp_path, capsys):
    """The GPU side of the report, fed with what a CUDA worker writes (this machine has no GPU to produce it)."""
    from convnext_dense.analysis import memory_benchmark
    tool = load_tool('analysis_tools/benchmark_memory')
    args = tool.parse_args([DETECTION, SEGMENTATION, '--out-dir', str(tmp_path)])
    env = dict(device='cuda', device_name='NVIDIA H100 80GB HBM3', torch=torch.__version__, cuda='13.0')
    results = [
        dict(name='convnext', config=DETECTION, status='ok', error=None, env=env, task='detection',
             precision='amp-float16', input_shape=[2, 3, 800, 1344], params_m=48.1, train_peak_allocated_gib=3.891,
             train_peak_reserved_gib=4.5, peak_rss_mib=3000.0, step_median_s=0.153, step_mean_s=0.155,
             throughput_img_s=2 / 0.153),
        dict(name='swin', config=SEGMENTATION, status='oom', error='CUDA out of memory.', env=env, peak_rss_mib=2900.0),
    ]
    assert memory_benchmark.report(args, results) == 0, 'an OOM is a measurement, not a failure of the tool'
    table = capsys.readouterr().out
    assert 'device: NVIDIA H100 80GB HBM3 | torch' in table and 'CPU RUN' not in table
    assert 'peak alloc (GiB)' in table and 'peak reserved (GiB)' in table and 'peak RSS' not in table
    convnext, swin = (line for line in table.splitlines() if line.startswith(('convnext', 'swin')))
    assert '3.891' in convnext and '4.500' in convnext and '13.07' in convnext
    assert '| oom ' in swin and '3.891' not in swin
    payload = json.loads((tmp_path / 'benchmark_memory.json').read_text())
    assert payload['memory_metric'] == 'gpu_peak_allocated_reserved' and payload['device_name'].startswith('NVIDIA')
    assert (tmp_path / 'benchmark_memory.png').read_bytes()[:4] == b'\x89PNG'


def test_results_table_sets_convnext_against_swin_and_labels_estimates(tmp_path):
    """Estimates are tabled as estimated GPU memory, and each ConvNeXt config against the Swin of its size at every
    setting, as ratios to Swin's default."""
    peaks = {'default': {'convnext_b_3x': 8.0, 'swin_b_3x': 10.0, 'convnext_t_3x': 5.0},
             'leanest': {'convnext_b_3x': 4.0, 'swin_b_3x': 9.0, 'convnext_t_3x': 3.0}}
    for setting, configs in peaks.items():
        folder = tmp_path / f'memory_{setting}'
        folder.mkdir()
        results = [dict(name=name, status='ok', precision='amp (half-precision sizes)', params_m=1.0,
                        estimated_peak_gib=gib) for name, gib in configs.items()]
        (folder / 'benchmark_memory.json').write_text(json.dumps(dict(
            tool='benchmark_memory', memory_metric='estimated_gpu_peak_allocated', device='cpu', torch='x',
            device_name='cpu', results=results)))
    proc = run_tool('results_table', str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert 'CPU ESTIMATE' in proc.stdout and 'train peak estimated alloc (GiB)' in proc.stdout
    assert ('| size | ConvNeXt default | Swin default | ConvNeXt leanest | Swin leanest | ConvNeXt default / Swin '
            'default | ConvNeXt leanest / Swin default |') in proc.stdout
    assert '| b_3x | 8.000 | 10.000 | 4.000 | 9.000 | 0.800 | 0.400 |' in proc.stdout
    assert '| t_3x |' not in proc.stdout, 'no Swin-T to set ConvNeXt-T against'
    assert 'Training step time on the CPU' not in proc.stdout, 'no CPU step times measured'

    # CPU step times per setting: what the leaner setting costs, as a ratio to the default
    for setting, seconds in {'default': 20.0, 'leanest': 25.0}.items():
        folder = tmp_path / f'cpu_steps_{setting}'
        folder.mkdir()
        results = [dict(name='convnext_b_3x', status='ok', precision='fp32', step_median_s=seconds,
                        peak_rss_mib=100.0, env=dict(device_name='CPU x'))]
        (folder / 'benchmark_memory.json').write_text(json.dumps(dict(
            tool='benchmark_memory', memory_metric='cpu_peak_rss', device='cpu', torch='x', results=results)))
    proc = run_tool('results_table', str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert '| size | ConvNeXt default | Swin default | ConvNeXt leanest | Swin leanest |' in proc.stdout, \
        'CPU step times are not a memory setting'
    assert 'Training step time on the CPU (fp32, CPU x' in proc.stdout
    assert '| config | default (s) | leanest (s) | leanest / default |' in proc.stdout
    assert '| convnext_b_3x | 20.00 | 25.00 | 1.250 |' in proc.stdout


def test_results_table_from_a_tiny_cpu_run(memory_run, tmp_path):
    """tools/analysis_tools/results_table.py reads the folder layout of tools/gpu_check.sh: memory_<setting>/ and
    backbone/."""
    import shutil
    pytest.importorskip('mmpretrain', reason='the backbone benchmark compares with mmpretrain, which is not installed '
                        'on this stack')
    _, memory_dir = memory_run
    shutil.copytree(memory_dir, tmp_path / 'memory_default')
    proc = run_tool('benchmark_backbone', '--arch', 'atto', '--impls', 'ours', 'mmpretrain', '--device', 'cpu',
                    '--amp', 'fp32', '--shape', '64', '96', '--iters', '1', '--warmup', '1',
                    '--out-dir', str(tmp_path / 'backbone'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backbone = json.loads((tmp_path / 'backbone' / 'benchmark_backbone.json').read_text())
    assert [r['name'] for r in backbone['results']] == ['ours', 'mmpretrain']
    assert all(r['status'] == 'ok' and r['train_median_s'] > 0 for r in backbone['results'])
    assert backbone['results'][0]['params_m'] == pytest.approx(backbone['results'][1]['params_m'], rel=0.01)

    proc = run_tool('results_table', str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / 'RESULTS.md').read_text()
    assert table.strip() == proc.stdout.strip()
    assert f'torch {torch.__version__}' in table and 'CPU RUN' in table
    assert '| bench_mask_rcnn_convnext_atto | default |' in table
    assert '| bench_upernet_convnext_atto | default |' in table
    assert '| ours |' in table and '| mmpretrain |' in table
    # Only the backbone targets' inputs exist partly; everything not measured says so instead of passing.
    assert table.count('not measured') == 5
    empty = tmp_path / 'empty'
    empty.mkdir()
    proc = run_tool('results_table', str(empty))
    assert proc.returncode != 0 and 'no benchmark_memory.json or benchmark_backbone.json' in proc.stderr
