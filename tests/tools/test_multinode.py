"""Launching on several machines: tools/slurm_{train,test}.sh hand srun mmdet's arguments (a fake srun records them),
and tools/dist_train.sh trains as 2 nodes x 1 process on localhost (NNODES, NODE_RANK, MASTER_ADDR, PORT) with both
ranks ending on the same weights."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import convnext_dense  # noqa: F401  our weights-only checkpoint loader

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'


@pytest.fixture
def fake_srun(tmp_path):
    """A `srun` first on PATH that writes its argv (NUL-separated) to a file and succeeds."""
    bin_dir, record = tmp_path / 'bin', tmp_path / 'srun_argv'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > {record}\n')
    srun.chmod(0o755)

    def run(script, *args, **env):
        result = subprocess.run(['bash', str(TOOLS / script), *args], capture_output=True, text=True, timeout=60,
                                env={**os.environ, 'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'PYTHON': 'python3',
                                     **env})
        argv = record.read_text().split('\0')[:-1] if record.exists() else None
        return result, argv

    return run


def srun_options(gpus, per_node, cpus):
    return [f'--gres=gpu:{per_node}', f'--ntasks={gpus}', f'--ntasks-per-node={per_node}', f'--cpus-per-task={cpus}',
            '--kill-on-bad-exit=1']


def test_slurm_train_defaults_follow_mmdet(fake_srun):
    result, argv = fake_srun('slurm_train.sh', 'gpu', 'job', 'configs/x.py', 'work_dirs/x')
    assert result.returncode == 0, result.stderr
    assert argv == ['-p', 'gpu', '--job-name=job', *srun_options(8, 8, 5), '--signal=USR1@300',
                    'python3', '-u', str(TOOLS / 'train.py'), 'configs/x.py', '--work-dir=work_dirs/x',
                    '--launcher=slurm']


def test_slurm_train_takes_resources_srun_args_and_train_options(fake_srun):
    result, argv = fake_srun('slurm_train.sh', 'p1', 'big job', 'c.py', 'w', '--resume', '--cfg-options',
                             'work_dir=a b', GPUS='16', GPUS_PER_NODE='4', CPUS_PER_TASK='2',
                             SRUN_ARGS='--quotatype=auto --time=1:00:00', SIGNAL_SECONDS='60')
    assert result.returncode == 0, result.stderr
    assert argv == ['-p', 'p1', '--job-name=big job', *srun_options(16, 4, 2), '--signal=USR1@60',
                    '--quotatype=auto', '--time=1:00:00',
                    'python3', '-u', str(TOOLS / 'train.py'), 'c.py', '--work-dir=w', '--launcher=slurm', '--resume',
                    '--cfg-options', 'work_dir=a b']


def test_slurm_test_passes_config_and_checkpoint(fake_srun):
    result, argv = fake_srun('slurm_test.sh', 'gpu', 'eval', 'c.py', 'ckpt/epoch_36.pth', '--out', 'r.pkl', GPUS='2')
    assert result.returncode == 0, result.stderr
    # fewer GPUS than a node: one node with that many
    assert argv == ['-p', 'gpu', '--job-name=eval', *srun_options(2, 2, 5),
                    'python3', '-u', str(TOOLS / 'test.py'), 'c.py', 'ckpt/epoch_36.pth', '--launcher=slurm', '--out',
                    'r.pkl']


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
@pytest.mark.parametrize('args, env, message', [
    (('gpu', 'job', 'c.py'), {}, 'usage: '),
    (('gpu', 'job', 'c.py', 'x'), {'GPUS': '12'}, 'GPUS=12 must be a positive multiple of GPUS_PER_NODE=8'),
])
def test_slurm_scripts_refuse_bad_input_without_calling_srun(fake_srun, script, args, env, message):
    result, argv = fake_srun(script, *args, **env)
    assert result.returncode == 2 and message in result.stderr and argv is None


def test_slurm_script_without_srun_points_to_dist_train(tmp_path):
    path = f'{tmp_path}:/usr/bin:/bin'  # bash and coreutils, no srun
    result = subprocess.run(['bash', str(TOOLS / 'slurm_train.sh'), 'p', 'j', 'c.py', 'w'], capture_output=True,
                            text=True, env={**os.environ, 'PATH': path}, timeout=60)
    assert result.returncode == 2 and 'srun not found' in result.stderr and 'tools/dist_train.sh' in result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# 2 nodes x 1 process on localhost

DUMP_HOOK = '''
"""Each rank saves its model's weights before and after training (test helper)."""
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpWeightsHook(Hook):

    def _dump(self, runner, when):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        torch.save({'rank': rank, 'world_size': world_size, 'state_dict': model.state_dict()},
                   f'{runner.work_dir}/{when}_rank{rank}.pth')

    def before_train(self, runner):
        self._dump(runner, 'before')

    def after_train(self, runner):
        self._dump(runner, 'after')
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_end_with_the_same_weights(tmp_path):
    data = tmp_path / 'demo'
    subprocess.run([sys.executable, str(TOOLS / 'misc' / 'make_demo_data.py'), '--out', str(data), '--num-train', '8',
                    '--num-val', '2'], check=True, capture_output=True)
    (tmp_path / 'dump_weights_hook.py').write_text(DUMP_HOOK)
    config = tmp_path / 'two_nodes.py'
    config.write_text(textwrap.dedent(f'''\
        _base_ = {str(REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py')!r}
        custom_imports = dict(imports=['convnext_dense', 'dump_weights_hook'], allow_failed_imports=False)
        custom_hooks = [dict(type='DumpWeightsHook')]
        '''))
    root = data / 'coco'
    # 8 images, 2 per batch on each of 2 ranks: 2 iterations
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={root}/',
               f'val_dataloader.dataset.data_root={root}/',
               f'val_evaluator.ann_file={root}/annotations/instances_val2017.json', 'train_cfg.max_epochs=1',
               'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=1',
               'default_hooks.logger.interval=1']
    env = {**os.environ, 'NNODES': '2', 'MASTER_ADDR': '127.0.0.1', 'PORT': str(free_port()), 'PYTHON': sys.executable,
           'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])}
    nodes = [subprocess.Popen(['bash', str(TOOLS / 'dist_train.sh'), str(config), '1', '--work-dir',
                               str(tmp_path / f'node{rank}'), *options], cwd=REPO, env={**env, 'NODE_RANK': str(rank)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=420)[0] for node in nodes]
    finally:
        for node in nodes:  # torchrun and its worker, if a node hangs (e.g. waiting for the other)
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    for rank, (node, output) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f'node {rank}:\n{output[-3000:]}'

    def dump(rank, when):
        return torch.load(tmp_path / f'node{rank}' / f'{when}_rank{rank}.pth', weights_only=True)

    after = [dump(rank, 'after') for rank in (0, 1)]
    assert [(d['rank'], d['world_size']) for d in after] == [(0, 2), (1, 2)]
    before = dump(0, 'before')['state_dict']
    trained = [k for k, v in after[0]['state_dict'].items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith('backbone.') for k in trained) and any(k.startswith('roi_head.') for k in trained)
    assert after[0]['state_dict'].keys() == after[1]['state_dict'].keys()
    for key, value in after[0]['state_dict'].items():
        torch.testing.assert_close(after[1]['state_dict'][key], value, rtol=0, atol=0, msg=key)
    # only rank 0 writes checkpoints: node0 has the epoch's, and it holds the same weights
    checkpoint = _load_checkpoint(str(tmp_path / 'node0' / 'epoch_1.pth'), map_location='cpu')
    torch.testing.assert_close(checkpoint['state_dict'], after[0]['state_dict'], rtol=0, atol=0)
    assert not (tmp_path / 'node1' / 'epoch_1.pth').exists()
