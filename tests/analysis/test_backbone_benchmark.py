"""convnext_dense.analysis.backbone_benchmark: one worker per implementation, and speed-ups over mmpretrain's."""
import json

from conftest import load_tool

from convnext_dense.analysis import backbone_benchmark
from convnext_dense.analysis.process_isolation import Job


def test_one_job_per_implementation():
    argv = ['--arch', 'atto', '--impls', 'ours', 'mmpretrain']
    assert backbone_benchmark.backbone_jobs(['ours', 'mmpretrain'], argv) == [
        Job('ours', [*argv, '--worker', 'ours'], 'ours'), Job('mmpretrain', [*argv, '--worker', 'mmpretrain'],
                                                              'mmpretrain')]


def test_report_sets_each_implementation_against_mmpretrain(tmp_path, capsys):
    args = load_tool('analysis_tools/benchmark_backbone').parse_args(['--arch', 'tiny', '--out-dir', str(tmp_path)])
    env = dict(device='cuda', device_name='GPU', torch='x')
    results = [dict(name='ours_channels_last_compile', status='ok', params_m=28.6, train_median_s=0.05, env=env,
                    train_peak_allocated_gib=2.0),
               dict(name='mmpretrain', status='ok', params_m=28.6, train_median_s=0.2, env=env,
                    train_peak_allocated_gib=3.0)]
    assert backbone_benchmark.report(args, results) == 0
    lines = capsys.readouterr().out.splitlines()
    ours, = (line for line in lines if line.startswith('ours_channels_last_compile'))
    assert '| 50.0 ' in ours and '| 4.00 ' in ours and ours.rstrip().endswith('2.000')
    assert 'peak alloc (GiB)' in lines[next(i for i, line in enumerate(lines) if line.startswith('implementation'))]
    payload = json.loads((tmp_path / 'benchmark_backbone.json').read_text())
    assert payload['tool'] == 'benchmark_backbone' and payload['settings']['arch'] == 'tiny'
    assert backbone_benchmark.report(args, [*results, dict(name='timm_channels_last_compile', status='failed',
                                                           error='worker exited with code 1: x')]) == 1
