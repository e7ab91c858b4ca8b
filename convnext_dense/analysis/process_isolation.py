"""Each measurement of a benchmark tool in its own Python process.

Peak-memory counters, allocator caches and compile caches of one model would otherwise leak into the next one's
numbers, and a crash or an out-of-memory error would end the whole run. The tool's script runs once per job as a
worker (:func:`worker_main`, selected by ``--worker-result FILE``) and writes its result there; the parent
(:func:`run_isolated`) collects the results in job order, a dead worker's as a failed result.
"""
import argparse
import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable, List, NamedTuple, Sequence

import torch

from .benchmark import environment, peak_rss_mib, resolve_device


class Job(NamedTuple):
    """One worker run: ``name`` names its row, log and result file; ``argv`` is the worker's command line (without
    ``--worker-result``); ``subject`` is what it measures (a config file, an implementation)."""
    name: str
    argv: List[str]
    subject: str


def unique_names(configs: Sequence[str]) -> List[str]:
    """Each config's file stem, prefixed with its position where two configs share a stem."""
    stems = [Path(c).stem for c in configs]
    return [stem if stems.count(stem) == 1 else f'{i}_{stem}' for i, stem in enumerate(stems)]


def config_jobs(configs: Sequence[str], argv: Sequence[str]) -> List[Job]:
    """One job per config: the config alone, with every other argument of the tool's command line."""
    others = [a for a in argv if a not in configs]
    return [Job(name, [config, *others], config) for config, name in zip(configs, unique_names(configs))]


def worker_main(args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict]) -> int:
    """Measure ``args.configs[0]`` in this process and write the result JSON for the parent: ``status`` ok, oom
    (a measurement: the config does not fit) or failed (the traceback goes to the worker's log)."""
    config = args.configs[0]
    result = dict(config=config, status='ok', error=None)
    code = 0
    try:
        result.update(measure(args))
    except torch.OutOfMemoryError as exc:
        result.update(status='oom', error=str(exc).splitlines()[0])
    except Exception as exc:  # reported in the table and the JSON, the traceback goes to the log
        traceback.print_exc()
        result.update(status='failed', error=f'{type(exc).__name__}: {exc}')
        code = 1
    device = resolve_device(args.device)
    result.setdefault('env', environment(device))
    result['peak_rss_mib'] = peak_rss_mib()
    Path(args.worker_result).write_text(json.dumps(result, indent=2, default=str))
    return code


def run_isolated(script: str, out_dir: str, jobs: Sequence[Job]) -> List[dict]:
    """Run ``script`` once per job in a fresh Python process, its output in ``<out_dir>/logs/<name>.log``; return
    the result dicts in job order, each with its ``name``."""
    logs = Path(out_dir) / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for job in jobs:
        result_file, log_file = logs / f'{job.name}.json', logs / f'{job.name}.log'
        result_file.unlink(missing_ok=True)
        subject = '' if job.subject == job.name else f' {job.subject}'
        print(f'[{job.name}] measuring{subject} (log: {log_file})', flush=True)
        with open(log_file, 'w') as log:
            proc = subprocess.run([sys.executable, script, *job.argv, '--worker-result', str(result_file)],
                                  stdout=log, stderr=subprocess.STDOUT)
        if result_file.is_file():
            result = json.loads(result_file.read_text())
        else:
            tail = log_file.read_text().strip().splitlines()[-1:] or ['']
            result = dict(config=job.subject, status='failed',
                          error=f'worker exited with code {proc.returncode}: {tail[0]}')
        result['name'] = job.name
        if result['status'] != 'ok':
            print(f'[{job.name}] {result["status"].upper()}: {result["error"]} (see {log_file})', flush=True)
        results.append(result)
    return results
