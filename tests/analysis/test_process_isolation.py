"""convnext_dense.analysis.process_isolation: one worker process per job, results collected in job order, a dead
worker reported as a failed result."""
import argparse
import json
import textwrap

import torch

from convnext_dense.analysis.process_isolation import Job, config_jobs, run_isolated, unique_names, worker_main

# A stand-in for a benchmark tool's worker: writes what it was called with, or dies without a result.
WORKER = textwrap.dedent('''
    import argparse, json, sys
    parser = argparse.ArgumentParser()
    parser.add_argument('subject')
    parser.add_argument('--flag')
    parser.add_argument('--worker-result')
    args = parser.parse_args()
    if args.subject == 'crash':
        print('about to die', flush=True)
        sys.exit(3)
    json.dump(dict(config=args.subject, status='ok', error=None, argv=sys.argv[1:]), open(args.worker_result, 'w'))
''')


def test_run_isolated_runs_each_named_job_in_its_own_process(tmp_path, capsys):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    out = tmp_path / 'out'
    (out / 'logs').mkdir(parents=True)
    (out / 'logs' / 'crash.json').write_text(json.dumps(dict(status='ok')))  # a stale result of an earlier run
    configs = ['a/x.py', 'b/x.py', 'crash']
    jobs = config_jobs(configs, ['a/x.py', '--flag', 'v', 'b/x.py', 'crash'])
    assert jobs == [Job('0_x', ['a/x.py', '--flag', 'v'], 'a/x.py'), Job('1_x', ['b/x.py', '--flag', 'v'], 'b/x.py'),
                    Job('crash', ['crash', '--flag', 'v'], 'crash')]
    results = run_isolated(str(script), str(out), jobs)
    assert [r['name'] for r in results] == ['0_x', '1_x', 'crash']
    first, second, crashed = results
    assert first['status'] == 'ok' and first['config'] == 'a/x.py'
    assert first['argv'] == ['a/x.py', '--flag', 'v', '--worker-result', str(out / 'logs' / '0_x.json')]
    assert second['argv'][0] == 'b/x.py'
    assert crashed == dict(name='crash', config='crash', status='failed',
                           error='worker exited with code 3: about to die')
    assert (out / 'logs' / 'crash.log').read_text() == 'about to die\n'
    stdout = capsys.readouterr().out
    assert f"[0_x] measuring a/x.py (log: {out / 'logs' / '0_x.log'})" in stdout
    assert f"[crash] FAILED: worker exited with code 3: about to die (see {out / 'logs' / 'crash.log'})" in stdout
    assert '[0_x] OK' not in stdout

    # A job named as what it measures (an implementation) is announced by its name alone.
    run_isolated(str(script), str(out), [Job('ours', ['ours'], 'ours')])
    assert f"[ours] measuring (log: {out / 'logs' / 'ours.log'})" in capsys.readouterr().out


def test_unique_names_number_configs_that_share_a_stem():
    assert unique_names(['a/convnext.py', 'swin.py']) == ['convnext', 'swin']
    assert unique_names(['a/x.py', 'b/x.py', 'y.py']) == ['0_x', '1_x', 'y']


def test_worker_main_writes_ok_oom_and_failed_results(tmp_path, capsys):
    result_file = tmp_path / 'result.json'
    args = argparse.Namespace(configs=['c.py'], device='cpu', worker_result=str(result_file))

    def measured(_):
        return dict(step_median_s=0.5)

    def out_of_memory(_):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2 GiB\nmore detail')

    def broken(_):
        raise ValueError('bad config')

    assert worker_main(args, measured) == 0
    ok = json.loads(result_file.read_text())
    assert ok['status'] == 'ok' and ok['config'] == 'c.py' and ok['step_median_s'] == 0.5
    assert ok['env']['device'] == 'cpu' and ok['env']['torch'] == torch.__version__ and ok['peak_rss_mib'] > 0
    assert worker_main(args, out_of_memory) == 0, 'a config that does not fit is a measurement'
    oom = json.loads(result_file.read_text())
    assert oom['status'] == 'oom' and oom['error'] == 'CUDA out of memory. Tried to allocate 2 GiB'
    assert worker_main(args, broken) == 1
    failed = json.loads(result_file.read_text())
    assert failed['status'] == 'failed' and failed['error'] == 'ValueError: bad config'
    assert 'Traceback' in capsys.readouterr().err
