"""convnext_dense.analysis.reports: the tables, report files and exit code every benchmark tool ends with."""
import json

from convnext_dense.analysis.reports import dims, fmt, format_table, publish_report, report_header

PANELS = [('step (median)', 's', {'step': [0.5, None]}), ('memory', 'GiB', {'alloc': [1.0, None], 'res': [2, None]})]


def results(*statuses):
    return [dict(name=f'config{i}', status=status, error=None if status == 'ok' else status)
            for i, status in enumerate(statuses)]


def test_publish_report_prints_writes_json_table_and_chart(tmp_path, capsys):
    payload = dict(tool='benchmark_x', title='a title', results=results('ok', 'oom'))
    code = publish_report(str(tmp_path / 'out'), 'benchmark_x', 'THE TABLE', payload, PANELS, payload['results'])
    assert code == 0, 'an out-of-memory result is a measurement, not a failure'
    out = tmp_path / 'out'
    assert json.loads((out / 'benchmark_x.json').read_text()) == payload
    assert (out / 'benchmark_x.txt').read_text() == 'THE TABLE\n'
    assert (out / 'benchmark_x.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    stdout = capsys.readouterr().out
    assert stdout.startswith('THE TABLE\n')
    assert f"wrote {out / 'benchmark_x.json'}, {out / 'benchmark_x.txt'}, {out / 'benchmark_x.png'}" in stdout


def test_publish_report_fails_on_a_failed_result_or_an_invalid_run(tmp_path):
    failed = results('ok', 'failed')
    assert publish_report(str(tmp_path), 's', 't', dict(title='t'), PANELS, failed) == 1
    assert (tmp_path / 's.json').is_file(), 'the report is written all the same'
    assert publish_report(str(tmp_path), 's', 't', dict(title='t'), PANELS, results('ok', 'ok'), valid=False) == 1
    assert publish_report(str(tmp_path), 's', 't', dict(title='t'), PANELS, results('ok', 'ok')) == 0


def test_tables_align_columns_and_mark_what_is_missing():
    table = format_table(['config', 'peak (GiB)'], [['convnext_b', fmt(3.14159)], ['swin_b', fmt(None)]])
    assert table.splitlines() == ['config     | peak (GiB)',
                                  '-----------+-----------',
                                  'convnext_b | 3.142     ',
                                  'swin_b     | -         ']
    assert fmt(None, missing='n/a') == 'n/a' and fmt(2.0, '.1f') == '2.0'
    assert dims(dict(input_shape=[2, 3, 800, 1344]), 'input_shape') == '2x3x800x1344'
    assert dims({}, 'input_shape') == '-'


def test_report_header_names_the_device_and_labels_cpu_runs():
    env = dict(device='cpu', device_name='CPU: x', torch='2.x', mmdet='3', mmseg='1', mmcv='2')
    header = report_header([dict(name='a', status='failed'), dict(name='b', status='ok', env=env)])
    assert header[0] == 'device: CPU: x | torch 2.x | mmdet 3 | mmseg 1 | mmcv 2'
    assert header[1].startswith('CPU RUN')
    gpu = report_header([dict(env=dict(env, device='cuda', device_name='NVIDIA H100', cuda='13.0'))])
    assert gpu == ['device: NVIDIA H100 | torch 2.x (CUDA 13.0) | mmdet 3 | mmseg 1 | mmcv 2']
