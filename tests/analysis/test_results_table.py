"""convnext_dense.analysis.results_table: the targets of the README's results table, met or missed."""
import pytest

from convnext_dense.analysis.results_table import load, markdown


def memory(setting_results):
    return dict(tool='benchmark_memory', device='cuda', device_name='GPU', torch='x', cuda='13.0',
                results=setting_results)


def test_targets_are_ratios_of_one_run_met_or_missed():
    runs = {'default': memory([dict(name='swin_b_3x', step_median_s=1.0, train_peak_allocated_gib=10.0)]),
            'fastest': memory([dict(name='convnext_b_3x', step_median_s=0.7, train_peak_allocated_gib=9.5)]),
            'leanest': memory([dict(name='convnext_b_3x', step_median_s=1.5, train_peak_allocated_gib=4.0)])}
    backbone = dict(tool='benchmark_backbone', settings=dict(arch='base', amp='bf16', batch_size=2, shape=[800, 1344]),
                    results=[dict(name='mmpretrain', train_median_s=0.3),
                             dict(name='ours_channels_last_compile', train_median_s=0.1),
                             dict(name='timm_channels_last_compile', train_median_s=0.09)])
    text = markdown(runs, backbone, {})
    assert text.startswith('Measured on GPU, torch x, CUDA 13.0')
    assert '| backbone: mmpretrain eager time / ours (fastest) | 3.000 | ≥ 2.5 | met |' in text
    assert '| backbone: ours (fastest) / timm channels_last+compile time | 1.111 | ≤ 1.0 | MISSED |' in text
    assert '| Cascade B fastest / Swin-B: step time | 0.700 | ≤ 0.75 | met |' in text
    assert '| Cascade B fastest / Swin-B: peak memory | 0.950 | ≤ 0.9 | MISSED |' in text
    assert '| Cascade B leanest / Swin-B: peak memory | 0.400 | ≤ 0.5 | met |' in text


def test_a_folder_without_benchmarks_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match='no benchmark_memory.json or benchmark_backbone.json'):
        load(tmp_path)
