"""The package reads by role and stays so: imports only go down the layers (no module imports one above it, none the
package root), no import circle between modules, the tools stay thin, and the README's Layout section names every
folder there is."""
import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest
from conftest import REPO

PACKAGE = 'convnext_dense'
# Bottom to top: a module may import from its own layer and the ones below it, never from one above.
LAYERS = ('utils', 'version', 'checkpoint', 'models', 'datasets', 'evaluation', 'engine', 'host_configs', 'patches',
          'deploy', 'apis', 'visualization', 'analysis')
MAX_TOOL_LINES = 120  # a tool's lines apart from its argument parsing (parse_args)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_modules() -> Dict[str, Path]:
    return {module_name(path): path for path in sorted((REPO / PACKAGE).rglob('*.py'))}


def imported_modules(name: str, path: Path, known: Set[str]) -> List[str]:
    """The package's modules that ``name`` imports anywhere (functions included): ``from a import b`` counts as
    ``a.b`` where that is a module, else ``a``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ''
            found += [f'{source}.{alias.name}' if f'{source}.{alias.name}' in known else source
                      for alias in node.names]
    return [module for module in found if module == PACKAGE or module.startswith(PACKAGE + '.')]


def layer_of(module: str) -> str:
    return module.split('.')[1] if '.' in module else PACKAGE


def import_graph() -> Dict[str, List[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def test_every_part_of_the_package_has_a_layer():
    parts = {layer_of(name) for name in package_modules()} - {PACKAGE}
    assert parts <= set(LAYERS), f'add {sorted(parts - set(LAYERS))} to LAYERS, at its place in the order'


def test_imports_only_go_down_the_layers():
    upward = []
    for importer, targets in import_graph().items():
        if importer == PACKAGE:
            continue  # the package root gathers the public names of every layer
        for target in targets:
            if target == PACKAGE:
                upward.append(f'{importer} imports the package root (import what it needs from its module)')
            elif LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(importer)):
                upward.append(f'{importer} ({layer_of(importer)}) imports {target} ({layer_of(target)})')
    assert not upward, 'imports that go up the layers ' + ' > '.join(LAYERS) + ':\n' + '\n'.join(upward)


def test_no_import_circle():
    graph = import_graph()
    state: Dict[str, str] = {}
    circles = []

    def visit(module, trail):
        state[module] = 'open'
        for target in graph.get(module, []):
            if state.get(target) == 'open':
                circles.append(' -> '.join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 'done'

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not circles, 'import circles:\n' + '\n'.join(circles)


def test_the_import_check_sees_upward_and_circular_imports(tmp_path):
    """The checks above would catch what they look for: relative and absolute imports, inside functions too."""
    path = tmp_path / 'fake.py'
    path.write_text('from ..apis import inference\ndef f():\n    from convnext_dense.deploy import export\n'
                    '    from . import sibling\n')
    known = {'convnext_dense.apis.inference', 'convnext_dense.models.sibling'}
    assert imported_modules('convnext_dense.models.fake', path, known) == [
        'convnext_dense.apis.inference', 'convnext_dense.deploy', 'convnext_dense.models.sibling']


def tool_lines(path: Path) -> int:
    """Lines of a tool script apart from its ``parse_args`` function."""
    lines = path.read_text().splitlines()
    tree = ast.parse('\n'.join(lines))
    parsing = sum(node.end_lineno - node.lineno + 1 for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name == 'parse_args')
    return len(lines) - parsing


@pytest.mark.parametrize('tool', sorted(p.relative_to(REPO / 'tools').as_posix()
                                        for p in (REPO / 'tools').rglob('*.py')))
def test_tools_are_thin_scripts_over_library_code(tool):
    lines = tool_lines(REPO / 'tools' / tool)
    assert lines <= MAX_TOOL_LINES, (f'tools/{tool} has {lines} lines apart from parse_args (at most '
                                     f'{MAX_TOOL_LINES}): move what it computes into the library')


def readme_layout() -> Set[str]:
    """The folders the README's "Layout" section names (``- `folder/` ...`` lines)."""
    text = (REPO / 'README.md').read_text()
    section = re.search(r'^## Layout\n(.*?)(?=^## )', text, re.S | re.M)
    assert section, 'README.md has no "## Layout" section'
    return set(re.findall(r'^\s*[-|] ?`([\w./]+/)`', section.group(1), re.M))


def test_readme_layout_names_every_folder():
    folders = {f'{path.relative_to(REPO).as_posix()}/' for root in (PACKAGE, 'tools', 'configs', 'tests')
               for path in [REPO / root, *(REPO / root).rglob('*')]
               if path.is_dir() and '__pycache__' not in path.parts and path.name != '_base_'
               and not (root == 'tests' and path != REPO / 'tests')
               and not (root == 'configs' and path != REPO / 'configs')}
    named = readme_layout()
    assert folders - named == set(), f'folders missing from the README\'s Layout section: {sorted(folders - named)}'
    assert named - folders == set(), f'the README\'s Layout section names folders that are not there: ' \
        f'{sorted(named - folders)}'


def test_test_modules_have_unique_names():
    """pytest imports test modules by file name (tests/ has no packages): two of one name stop the collection."""
    names = [path.name for path in (REPO / 'tests').rglob('test_*.py')]
    assert sorted({name for name in names if names.count(name) > 1}) == []
