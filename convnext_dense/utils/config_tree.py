"""Walking a config's trees: every dict of a subtree, and every dataset of a dataloader's dataset tree."""
from typing import Iterator, Tuple


def walk(node, key: str) -> Iterator[Tuple[str, dict]]:
    """Every dict in a config subtree, with its dotted key (``model.roi_head.bbox_head.1.norm_cfg``)."""
    if isinstance(node, dict):
        yield key, node
        for k, v in node.items():
            yield from walk(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from walk(v, f'{key}.{i}')


def get(cfg, key: str):
    """The node at a dotted key that :func:`walk` gave."""
    node = cfg
    for part in key.split('.'):
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node


def datasets(dataset: dict, key: str) -> Iterator[Tuple[str, dict, bool]]:
    """Every dataset of a dataset tree with its dotted key and whether it is a leaf: wrappers (RepeatDataset,
    ClassBalancedDataset: ``dataset``; ConcatDataset: ``datasets``) first, then what they wrap."""
    children = dataset.get('datasets')
    if isinstance(children, (list, tuple)):
        yield key, dataset, False
        for i, child in enumerate(children):
            yield from datasets(child, f'{key}.datasets.{i}')
    elif isinstance(dataset.get('dataset'), dict):
        yield key, dataset, False
        yield from datasets(dataset['dataset'], f'{key}.dataset')
    else:
        yield key, dataset, True


def leaf_datasets(dataset: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """The datasets that read files, under any wrappers."""
    return ((k, d) for k, d, leaf in datasets(dataset, key) if leaf)


def plain(value):
    """A config value as plain dicts, lists and numbers (tuples as lists), for comparing and writing."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
