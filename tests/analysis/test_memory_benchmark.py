"""convnext_dense.analysis.memory_benchmark and the optim_wrapper of the memory estimate: AMP configs on a CPU, and
the validation of the estimates against the anchors."""
import json

import pytest
import torch
from conftest import load_tool
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from convnext_dense.analysis import memory_benchmark
from convnext_dense.analysis.memory_anchors import ANCHORS
from convnext_dense.analysis.memory_estimate import StorageTracker, build_emulated_optim_wrapper

AMP_CFG = dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic', dtype='float16',
                                  optimizer=dict(type='AdamW', lr=1e-4)))


def test_amp_configs_train_in_fp32_on_a_cpu():
    cfg = Config(AMP_CFG)
    wrapper, precision, amp = memory_benchmark.build_optim_wrapper(cfg, torch.nn.Linear(4, 4), torch.device('cpu'))
    assert type(wrapper) is OptimWrapper and amp is True
    assert precision == 'fp32 (config asks for AMP, which needs CUDA)'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic', 'not modified'
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1))))
    wrapper, precision, amp = memory_benchmark.build_optim_wrapper(cfg, torch.nn.Linear(4, 4), torch.device('cpu'))
    assert type(wrapper) is OptimWrapper and (precision, amp) == ('fp32', False)


@pytest.mark.parametrize('amp', [None, False])
def test_the_estimate_emulates_amp_in_its_own_wrapper(amp):
    cfg = Config(AMP_CFG)
    tracker = StorageTracker()
    wrapper, emulated_amp = build_emulated_optim_wrapper(cfg, torch.nn.Linear(4, 4), tracker, amp)
    assert type(wrapper).__name__ == 'EmulatedGpuOptimWrapper' and not isinstance(wrapper, AmpOptimWrapper)
    assert emulated_amp is (amp is None) and wrapper.amp is emulated_amp and wrapper.tracker is tracker
    assert wrapper.optimizer.defaults['foreach'] is True, 'as torch picks for CUDA parameters'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and 'foreach' not in cfg.optim_wrapper.optimizer


def anchor_results(scale: dict):
    return [dict(name=name, status='ok', estimated_peak_gib=anchor[2] * scale.get(name, 1), tensors_at_peak_gib=1.0,
                 previous_iteration_at_peak_gib=0.25, ddp_buckets_gib=0.0, allocator_rounding_gib=0.5,
                 cublas_workspaces_gib=0.0625, loop='anchor', launcher='none')
            for name, anchor in ANCHORS.items()]


def test_validation_fails_the_run_when_an_estimate_is_out_of_tolerance(tmp_path, capsys):
    args = load_tool('analysis_tools/benchmark_memory').parse_args(['--estimate', '--validate', '--out-dir',
                                                                    str(tmp_path)])
    assert args.launcher == 'none' and args.loop == 'runner', "the parent's; its workers get --loop anchor"
    assert memory_benchmark.report_estimates(args, anchor_results({})) == 0
    table = capsys.readouterr().out
    assert "the H100 anchors' own loop (one process, no DDP" in table and 'of which previous step' in table
    assert 'of which left by the previous iteration' in table, 'the main table shows it too'
    assert '| cascade_convnext_t | 5.22 | 1.000 | 0.250 | 0.500 | 0.062 | 5.22 | +0.0% |' in table
    payload = json.loads((tmp_path / 'benchmark_memory.json').read_text())
    assert payload['settings']['loop'] == 'anchor' and payload['settings']['launcher'] == 'none'
    assert [row['name'] for row in payload['validation']] == list(ANCHORS)
    assert all(row['ok'] for row in payload['validation'])

    assert memory_benchmark.report_estimates(args, anchor_results({'cascade_swin_b': 1.06})) == 1
    line, = (line for line in capsys.readouterr().out.splitlines() if line.startswith('| cascade_swin_b |'))
    assert '+6.0%' in line and line.endswith('| NO |')


def test_cfg_options_go_to_the_workers_as_a_command_line_gives_them():
    from mmengine.config import DictAction
    argv = memory_benchmark.cfg_options_argv({'a.b': [1, 2], 'c': (3, 4), 'd': True, 'e': 0.5})
    assert argv == ['--cfg-options', 'a.b=[1,2]', 'c=(3,4)', 'd=True', 'e=0.5']
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    assert parser.parse_args(argv).cfg_options == {'a.b': [1, 2], 'c': (3, 4), 'd': True, 'e': 0.5}
    assert memory_benchmark.cfg_options_argv({}) == []
