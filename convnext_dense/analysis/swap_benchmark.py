"""How long ``tools/swap_backbone.py`` takes per host config, run in a fresh process each time as a user runs it
(imports included), against the time the README promises."""
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

from .reports import fmt, format_table, publish_report

PROMISED_SECONDS = 10.0


def time_swaps(tool: str, hosts: Sequence[str], arch: str, out_dir: str) -> List[dict]:
    """Run the swap tool once per host; wall time, and the last line of its error where it failed."""
    results = []
    for index, host in enumerate(hosts):
        out = Path(out_dir) / 'configs' / f'{index:02d}_{Path(host.split("::")[-1]).stem}.py'
        start = time.perf_counter()
        run = subprocess.run([sys.executable, tool, host, '--arch', arch, '--out', str(out)], capture_output=True,
                             text=True)
        seconds = time.perf_counter() - start
        error = (run.stderr.strip().splitlines() or [''])[-1] if run.returncode else None
        results.append(dict(name=host, seconds=seconds, status='failed' if run.returncode else 'ok', error=error))
    return results


def report(results: List[dict], arch: str, out_dir: str) -> int:
    """Print and write the table (``benchmark_swap.{txt,json,png}``); exit 1 if a swap failed or was too slow."""
    rows = [(r['name'], fmt(r['seconds'], '.2f'), r['status'] if r['status'] == 'ok' else r['error'])
            for r in results]
    slowest = max((r['seconds'] for r in results), default=0.)
    table = '\n'.join([
        f'tools/swap_backbone.py --arch {arch}, one fresh process per host (python {sys.version.split()[0]})',
        format_table(['host config', 'seconds', 'status'], rows),
        f'slowest {slowest:.2f} s; promised under {PROMISED_SECONDS:.0f} s per config'])
    payload = dict(title=f'swap_backbone.py per host config (ConvNeXt-{arch})', arch=arch, results=results,
                   promised_seconds=PROMISED_SECONDS)
    panels = [('tools/swap_backbone.py per host', 's', {'wall time': [r['seconds'] for r in results]})]
    return publish_report(out_dir, 'benchmark_swap', table, payload, panels, results,
                          valid=slowest < PROMISED_SECONDS)
