"""Installing the package into the environment that runs the tests (either stack) replaces none of the host's
packages: pip's own dry run of `pip install .` would install nothing but convnext-dense, and the declared
requirements name no OpenMMLab distribution (official and OneDL ones provide the same modules under other names)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pip_install_of_the_package_would_replace_nothing(tmp_path):
    report = tmp_path / 'report.json'
    result = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-build-isolation', '--quiet',
                             '--report', str(report), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    to_install = [item['metadata']['name'].lower() for item in json.loads(report.read_text())['install']]
    assert to_install == ['convnext-dense'], to_install


def test_requirements_are_loose_lower_bounds_without_openmmlab_distributions():
    requirements = [line.split('#')[0].strip() for line in (ROOT / 'requirements.txt').read_text().splitlines()]
    requirements = [r for r in requirements if r]
    assert requirements, 'requirements.txt lists what the plugin needs'
    for requirement in requirements:
        name = re.split(r'[<>=!~ \[]', requirement)[0].lower()
        assert '==' not in requirement, requirement
        assert not re.match(r'^(mmcv|mmengine|mmdet|mmsegmentation|mmpretrain|onedl-.*)$', name), requirement


def test_the_deploy_extra_is_loose_and_both_lock_files_pin_it():
    """`pip install convnext-dense[deploy]` adds onnx and onnxruntime with lower bounds only; `make install` and
    `make install-official` install the versions CI tests."""
    from distutils.core import run_setup
    extras = run_setup(str(ROOT / 'setup.py'), stop_after='init').extras_require
    assert sorted(re.split(r'[<>=]', r)[0] for r in extras['deploy']) == ['onnx', 'onnxruntime']
    assert all('>=' in r and '==' not in r and '<' not in r for r in extras['deploy']), extras
    for lock in ('dev.txt', 'official.txt'):
        pins = (ROOT / 'requirements' / lock).read_text().splitlines()
        assert 'onnx==1.23.2' in pins and 'onnxruntime==1.32.0' in pins, lock
