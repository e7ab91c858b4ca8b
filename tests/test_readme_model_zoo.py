"""The README's model zoo table lists every detection and segmentation config, and only configs that exist."""
import re

from conftest import REPO

ZOO_FOLDERS = ('mask_rcnn', 'cascade_rcnn', 'upernet', 'dino', 'mask2former')


def zoo_table_configs():
    """Config paths named in the first column of the table under the README's "## Model zoo" heading."""
    readme = (REPO / 'README.md').read_text()
    section = re.search(r'^## Model zoo\n(.*?)(?=^## )', readme, re.S | re.M)
    assert section, 'README.md has no "## Model zoo" section'
    rows = [line for line in section.group(1).splitlines() if line.startswith('| `configs/')]
    assert rows, 'the model zoo section has no table rows naming configs'
    return [re.match(r'\| `(configs/[^`]+)`', row).group(1) for row in rows]


def test_every_config_has_one_row():
    listed = zoo_table_configs()
    configs = sorted(str(path.relative_to(REPO)) for folder in ZOO_FOLDERS
                     for path in (REPO / 'configs' / folder).glob('*.py') if not path.name.startswith('_base'))
    assert configs, 'no configs found under configs/{mask_rcnn,cascade_rcnn,upernet,dino,mask2former}'
    assert sorted(set(configs) - set(listed)) == [], 'configs missing from the README model zoo table'
    assert sorted(c for c in set(listed) if listed.count(c) > 1) == [], 'configs listed twice'


def test_no_row_names_a_missing_config():
    missing = [config for config in zoo_table_configs() if not (REPO / config).is_file()]
    assert missing == [], f'the README model zoo table names configs that do not exist: {missing}'
