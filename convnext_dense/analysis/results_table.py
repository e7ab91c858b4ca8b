"""The README's results tables, in markdown, from one folder of benchmark JSON (what tools/gpu_check.sh writes).

Every ``benchmark_memory.json`` under the folder is a memory run whose folder names the setting (``memory_default``,
``memory_fastest``, ``memory_leanest``), or, in ``cpu_steps_<setting>`` folders, CPU step times; a
``benchmark_backbone.json`` is the backbone comparison. The markdown names the device, torch and CUDA and holds the
detector table, ConvNeXt against Swin size by size (configs named ``convnext_*`` and ``swin_*``), what each setting
costs in CPU step time as a ratio to the default, the backbone table and the targets as measured ratios. CPU estimates
(``benchmark_memory.py --estimate``) are tabled as such: estimated GPU memory, no step times.
"""
import json
from pathlib import Path

from . import reports

# The targets, each a ratio of two measurements of one run: our fastest backbone against mmpretrain's eager one and
# timm's compiled one, and Cascade Mask R-CNN ConvNeXt-B at its fastest and leanest settings against Swin-B.
BACKBONE_SPEEDUP = 2.5
FASTEST_TIME, FASTEST_MEMORY, LEANEST_MEMORY = 0.75, 0.9, 0.5
CPU_STEPS = 'cpu_steps_'  # folders of CPU step times per setting (tools/analysis_tools/estimate_memory_table.sh)


def load(folder: Path):
    """The benchmark payloads under ``folder``: memory runs by setting, the backbone run, CPU step times by setting.
    Raises FileNotFoundError when there is neither a memory nor a backbone run."""
    memory, backbone, cpu_steps = {}, None, {}
    for path in sorted(folder.rglob('benchmark_*.json')):
        payload = json.loads(path.read_text())
        if payload.get('tool') == 'benchmark_memory' and path.parent.name.startswith(CPU_STEPS):
            cpu_steps[path.parent.name.removeprefix(CPU_STEPS)] = payload
        elif payload.get('tool') == 'benchmark_memory':
            memory[path.parent.name.removeprefix('memory_')] = payload
        elif payload.get('tool') == 'benchmark_backbone':
            backbone = payload
    if not memory and backbone is None:
        raise FileNotFoundError(f'no benchmark_memory.json or benchmark_backbone.json under {folder}; '
                                'run tools/gpu_check.sh (or the benchmark tools with --out-dir inside it) first')
    return memory, backbone, cpu_steps


def memory_gib(result: dict):
    """A result's training memory in GiB: the GPU peak measured or estimated, else the process's peak RSS."""
    for key in ('train_peak_allocated_gib', 'estimated_peak_gib'):
        if key in result:
            return result[key]
    return result['peak_rss_mib'] / 1024 if 'peak_rss_mib' in result else None


def fmt(value, spec='.3f'):
    """A value of the markdown, or ``n/a`` where it was not measured."""
    return reports.fmt(value, spec, missing='n/a')


def target_line(text: str, value, limit: float, at_least: bool) -> str:
    """A markdown row: the measured ratio against its limit, met, MISSED or not measured."""
    if value is None:
        return f'| {text} | n/a | {"≥" if at_least else "≤"} {limit} | not measured |'
    met = value >= limit if at_least else value <= limit
    return f'| {text} | {value:.3f} | {"≥" if at_least else "≤"} {limit} | {"met" if met else "MISSED"} |'


def versus_swin(lookup: dict, settings: list) -> list:
    """ConvNeXt against Swin of the same size (``convnext_X`` against ``swin_X``) at each setting, as ratios to Swin's
    default: the memory comparison the paper makes, and what the leaner settings buy."""
    pairs = list(dict.fromkeys(name for name, _ in lookup if name.startswith('convnext_')
                               and (name.replace('convnext_', 'swin_', 1), 'default') in lookup))
    if not pairs:
        return []
    lines = ['', '| size | ' + ' | '.join(f'ConvNeXt {s} | Swin {s}' for s in settings)
             + ' | ' + ' | '.join(f'ConvNeXt {s} / Swin default' for s in settings) + ' |',
             '|---|' + '---|---|' * len(settings) + '---|' * len(settings)]
    for name in pairs:
        swin = name.replace('convnext_', 'swin_', 1)
        base = memory_gib(lookup[swin, 'default'])
        ours = [memory_gib(lookup.get((name, s), {})) for s in settings]
        cells = [f'{fmt(o)} | {fmt(memory_gib(lookup.get((swin, s), {})))}' for o, s in zip(ours, settings)]
        ratios = [fmt(None if o is None or not base else o / base) for o in ours]
        lines.append(f"| {name.removeprefix('convnext_')} | " + ' | '.join(cells + ratios) + ' |')
    return lines


def step_cost(cpu_steps: dict) -> list:
    """Each config's CPU step time at each setting and as a ratio to its default: what the leaner settings cost."""
    if 'default' not in cpu_steps:
        return []
    settings = [s for s in cpu_steps if s != 'default']
    times = {(r['name'], s): r.get('step_median_s') for s, p in cpu_steps.items() for r in p['results']}
    first = cpu_steps['default']['results'][0]
    where = f"{first.get('precision', '?')}, {first.get('env', {}).get('device_name', '?')}"
    lines = ['', f'Training step time on the CPU ({where}, tools/analysis_tools/benchmark_memory.py --device cpu), '
             'the cost of each setting as a ratio to the default:', '',
             '| config | default (s) | ' + ' | '.join(f'{s} (s) | {s} / default' for s in settings) + ' |',
             '|---|---|' + '---|---|' * len(settings)]
    for r in cpu_steps['default']['results']:
        default = times[r['name'], 'default']
        cells = [f"{fmt(times.get((r['name'], s)), '.2f')} | "
                 f"{fmt(times.get((r['name'], s)) / default if times.get((r['name'], s)) and default else None)}"
                 for s in settings]
        lines.append(f"| {r['name']} | {fmt(default, '.2f')} | " + ' | '.join(cells) + ' |')
    return lines


def markdown(memory: dict, backbone, cpu_steps: dict) -> str:
    """The README's results tables from :func:`load`'s payloads: the memory runs, ConvNeXt against Swin, the CPU
    step-time costs, the backbone implementations and the targets."""
    first = next(iter(memory.values()), backbone)
    cuda = f", CUDA {first['cuda']}" if first.get('cuda') else ''
    lines = [f"Measured on {first.get('device_name', '?')}, torch {first.get('torch', '?')}{cuda}, "
             f"mmdet {first.get('mmdet', '?')}, mmcv {first.get('mmcv', '?')}."]
    gpu = first.get('device') == 'cuda'
    estimate = first.get('memory_metric') == 'estimated_gpu_peak_allocated'
    if estimate:
        lines.append('CPU ESTIMATE of the peak GPU memory allocated by a training step '
                     '(tools/analysis_tools/benchmark_memory.py --estimate); no step times.')
    elif not gpu:
        lines.append('CPU RUN: memory is the peak RSS of each process, not GPU memory; the targets need a GPU run.')
    lookup = {}
    if memory:
        kind = 'estimated alloc' if estimate else 'alloc' if gpu else 'RSS'
        lines += ['', f'| config | setting | precision | params (M) | train peak {kind} (GiB) | train step (s) |',
                  '|---|---|---|---|---|---|']
        for setting, payload in memory.items():
            for r in payload['results']:
                lookup[r['name'], setting] = r
                lines.append(f"| {r['name']} | {setting} | {r.get('precision', '-')} | {fmt(r.get('params_m'), '.1f')} "
                             f"| {fmt(memory_gib(r))} | {fmt(r.get('step_median_s'), '.4f')} |")
    lines += versus_swin(lookup, list(memory))
    lines += step_cost(cpu_steps)
    impls = {}
    if backbone:
        s = backbone['settings']
        lines += ['', f"ConvNeXt-{s['arch']} backbone forward+backward, {s['amp']}, batch {s['batch_size']}, "
                  f"{s['shape'][0]}x{s['shape'][1]}:", '',
                  '| implementation | fwd+bwd (ms) | peak alloc (GiB) |', '|---|---|---|']
        for r in backbone['results']:
            impls[r['name']] = r.get('train_median_s')
            lines.append(f"| {r['name']} | {fmt(r.get('train_median_s') and r['train_median_s'] * 1e3, '.1f')} | "
                         f"{fmt(r.get('train_peak_allocated_gib'))} |")

    def ratio(a, b):
        return None if a is None or not b else a / b

    swin = lookup.get(('swin_b_3x', 'default'), {})
    fastest, leanest = lookup.get(('convnext_b_3x', 'fastest'), {}), lookup.get(('convnext_b_3x', 'leanest'), {})
    ours = impls.get('ours_channels_last_compile')
    lines += ['', '| target | measured | limit | |', '|---|---|---|---|',
              target_line('backbone: mmpretrain eager time / ours (fastest)', ratio(impls.get('mmpretrain'), ours),
                          BACKBONE_SPEEDUP, True),
              target_line('backbone: ours (fastest) / timm channels_last+compile time',
                          ratio(ours, impls.get('timm_channels_last_compile')), 1.0, False),
              target_line('Cascade B fastest / Swin-B: step time',
                          ratio(fastest.get('step_median_s'), swin.get('step_median_s')), FASTEST_TIME, False),
              target_line('Cascade B fastest / Swin-B: peak memory', ratio(memory_gib(fastest), memory_gib(swin)),
                          FASTEST_MEMORY, False),
              target_line('Cascade B leanest / Swin-B: peak memory', ratio(memory_gib(leanest), memory_gib(swin)),
                          LEANEST_MEMORY, False)]
    return '\n'.join(lines)


def write_results(folder: Path) -> str:
    """The markdown of the benchmark runs under ``folder``, also written to ``folder/RESULTS.md``."""
    text = markdown(*load(folder))
    (folder / 'RESULTS.md').write_text(text + '\n')
    return text
