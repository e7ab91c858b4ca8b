"""How the benchmark tools report: a plain-text table headed by the device and versions, a JSON payload, a bar chart,
and the exit code.

Every tool ends the same way (:func:`publish_report`): print the table, write ``<stem>.json``, ``<stem>.txt`` and
``<stem>.png`` under ``--out-dir``, name the files, and exit 1 when a measurement failed. An out-of-memory result is a
measurement (the config does not fit), not a failure of the tool.
"""
import json
import textwrap
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np


def result_env(results: List[dict]) -> dict:
    """The environment the workers measured in (device, versions); empty if none got that far."""
    return next((r['env'] for r in results if 'env' in r), {})


def report_header(results: List[dict]) -> List[str]:
    """The device and versions a table was measured with; on a CPU run, a warning that memory is RSS, not GPU."""
    env = result_env(results)
    lines = [f"device: {env.get('device_name', '?')} | torch {env.get('torch', '?')}"
             + (f" (CUDA {env['cuda']})" if env.get('cuda') else '')
             + f" | mmdet {env.get('mmdet', '?')} | mmseg {env.get('mmseg', '?')} | mmcv {env.get('mmcv', '?')}"]
    if env.get('device') == 'cpu':
        lines.append('CPU RUN: no GPU memory; memory is the peak RSS of each benchmark process (ru_maxrss), '
                     'times are CPU times')
    return lines


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, separated by ``|``, the header underlined."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return '\n'.join([line(headers), '-+-'.join('-' * w for w in widths), *map(line, rows)])


def fmt(value, spec: str = '.3f', missing: str = '-') -> str:
    """``value`` formatted, or ``missing`` where there is none (a failed or out-of-memory run)."""
    return missing if value is None else format(value, spec)


def dims(result: dict, key: str) -> str:
    """A shape of a result (``[2, 3, 800, 1344]``) as ``2x3x800x1344``; ``-`` where the run did not get to it."""
    return 'x'.join(map(str, result.get(key, []))) or '-'


def write_report(out_dir: str, stem: str, payload: dict, table: str,
                 panels: Sequence[tuple], names: Sequence[str]) -> Dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.txt`` (the table) and ``<stem>.png`` (one bar panel per metric)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(json=out / f'{stem}.json', table=out / f'{stem}.txt', png=out / f'{stem}.png')
    paths['json'].write_text(json.dumps(payload, indent=2, default=str))
    paths['table'].write_text(table + '\n')
    bar_chart(paths['png'], names, panels, title=payload['title'])
    return paths


def publish_report(out_dir: str, stem: str, table: str, payload: dict, panels: Sequence[tuple],
                   results: List[dict], valid: bool = True) -> int:
    """The end of every benchmark tool: print ``table``, write it with ``payload`` and the chart of ``panels``
    (:func:`write_report`, one bar per result), say where, and return the exit code: 1 if a result failed or the
    caller found the run not ``valid`` (a validation out of tolerance), else 0."""
    print(table)
    paths = write_report(out_dir, stem, payload, table, panels, [r['name'] for r in results])
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['png']}")
    failed = any(r['status'] == 'failed' for r in results)
    return 1 if failed or not valid else 0


def bar_chart(path: Path, names: Sequence[str], panels: Sequence[tuple], title: str):
    """``panels``: (title, unit, {series: [value per name, None where missing]}) each, drawn side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    width = max(4.5, 1.2 * len(names) + 2.5) * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 5.2), squeeze=False)
    x = np.arange(len(names))
    for ax, (panel_title, unit, series) in zip(axes[0], panels):
        bar_width = 0.8 / len(series)
        for k, (label, values) in enumerate(series.items()):
            # A missing value (failed or OOM run) is an empty bar labelled n/a.
            bars = ax.bar(x + (k - (len(series) - 1) / 2) * bar_width, [v or 0 for v in values], bar_width, label=label)
            ax.bar_label(bars, labels=['n/a' if v is None else f'{v:.4g}' for v in values], fontsize=7)
        ax.set_title(panel_title)
        ax.set_ylabel(unit)
        ax.set_xticks(x, names, rotation=20, ha='right', fontsize=8)
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, width=int(width * 14)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
