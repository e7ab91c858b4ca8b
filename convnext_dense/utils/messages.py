"""Message formatting shared by the library and the tools."""
from typing import Iterable


def first_n(items: Iterable, n: int = 5) -> str:
    """``'a, b, c and 4 more'``: the first ``n`` items of a list that may be long, for messages."""
    items = [str(item) for item in items]
    shown = ', '.join(items[:n])
    return shown + (f' and {len(items) - n} more' if len(items) > n else '')
