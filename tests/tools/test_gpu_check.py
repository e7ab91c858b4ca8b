"""tools/gpu_check.sh's memory mode (make gpu-memory-check), run with a stand-in Python that claims a GPU and records
each command: every run the README lists (configs, settings, launchers) is measured, each command parses, and the
printed follow-up commands estimate exactly the runs measured."""
import os
import shlex
import subprocess
from pathlib import Path

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = '''#!/usr/bin/env bash
# torch imports and sees CUDA; everything else is recorded, one command per line
case "$1" in -c) [[ "$2" == *get_device_name* ]] && echo "fake GPU"; exit 0;; esac
echo "$*" >> "$RECORD"
'''


def test_memory_mode_measures_every_run_and_prints_the_estimates_of_the_same_runs(tmp_path):
    python = tmp_path / 'python'
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    record = tmp_path / 'commands.txt'
    env = dict(os.environ, CHECK='memory', PYTHON=str(python), RECORD=str(record))
    proc = subprocess.run(['bash', 'tools/gpu_check.sh', str(tmp_path / 'out')], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tool = load_tool('analysis_tools/benchmark_memory')
    runs = {}
    for line in record.read_text().splitlines():
        argv = shlex.split(line)
        assert argv[0] == 'tools/analysis_tools/benchmark_memory.py'
        args = tool.parse_args([a for a in argv[1:] if a not in ('--device', 'cuda')])  # no CUDA here
        runs[Path(args.out_dir).name] = (args.launcher, args.cfg_options, sorted(Path(c).name for c in args.configs))
    cascade = sorted(f'{net}_{size}_3x.py' for net in ('convnext', 'swin') for size in 'tb')
    for launcher in ('pytorch', 'none'):
        assert runs[f'{launcher}_default'] == (launcher, {}, sorted(
            cascade + ['convnext_t_3x.py', 'convnext_t_160k_ade20k.py']))
        assert runs[f'{launcher}_leanest'] == (launcher, {'model.backbone.with_cp': True}, cascade)
    follow_ups = [line.split() for line in proc.stdout.splitlines() if '--against' in line]
    assert sorted(Path(f[f.index('--against') + 1]).parent.name for f in follow_ups) == sorted(runs)
