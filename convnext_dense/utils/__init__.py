"""Helpers with no knowledge of models or runs: message formatting and walking config trees."""
from .config_tree import datasets, get, leaf_datasets, walk
from .messages import first_n

__all__ = ['datasets', 'first_n', 'get', 'leaf_datasets', 'walk']
