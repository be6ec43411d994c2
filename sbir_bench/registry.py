"""Name -> factory registries for methods and datasets (timm's ``register_model`` pattern).

Unknown names fail with the list of known ones; registering a name twice fails loudly.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry lookup misses; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories. ``kind`` appears in error messages ("method", "dataset")."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules  # imported lazily so that registering is a side effect of import
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def _load(self) -> None:
        if not self._loaded:
            for module in self._modules:
                importlib.import_module(module)
            self._loaded = True

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        factory = self.get(name)
        return factory(**kwargs)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


METHODS: Registry[Any] = Registry(
    "method",
    modules=("sbir_bench.methods.baseline", "sbir_bench.methods.cvae"),
)
DATASETS: Registry[Any] = Registry(
    "dataset", modules=("sbir_bench.data.synthetic", "sbir_bench.data.readers")
)
# name -> check(root=None, **kwargs) -> list[Problem]: every problem of a dataset tree (sbir-bench data check)
DATASET_CHECKERS: Registry[Any] = Registry("dataset checker", modules=DATASETS._modules)
# name -> statistics(catalog, split) -> DataFrame (count / expected / difference per statistic): a split's
# counts beside the paper's table (sbir-bench data summary prints it)
SPLIT_STATISTICS: Registry[Any] = Registry("split statistics", modules=DATASETS._modules)

register_method = METHODS.register
register_dataset = DATASETS.register
register_dataset_checker = DATASET_CHECKERS.register
register_split_statistics = SPLIT_STATISTICS.register


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)
