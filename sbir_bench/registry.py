"""Name -> factory registries for methods and datasets (timm's ``register_model`` pattern).

Unknown names fail with the list of known ones; registering a name twice fails loudly. Packages outside
the suite add methods without editing this file: through the entry-point group ``sbir_bench.methods``
(``name = "package.module:Class"`` in their pyproject.toml, loaded with the registry), or a method config
whose ``_target_`` names the class (:func:`method_class`).
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry lookup misses; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of factories. ``kind`` appears in error messages ("method", "dataset")."""

    def __init__(
        self, kind: str, modules: tuple[str, ...] = (), entry_point_group: str | None = None
    ) -> None:
        self.kind = kind
        self._modules = modules  # imported lazily so that registering is a side effect of import
        self.entry_point_group = entry_point_group  # installed packages' entries, loaded with the modules
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
            if self.entry_point_group:
                for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
                    try:
                        obj = entry_point.load()
                    except Exception as error:
                        raise ImportError(
                            f"{self.kind} {entry_point.name!r} (entry point {entry_point.value} of group "
                            f"{self.entry_point_group}) cannot be loaded: {error}"
                        ) from error
                    self.register(entry_point.name)(obj)
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


METHOD_ENTRY_POINTS = "sbir_bench.methods"
METHODS: Registry[Any] = Registry(
    "method",
    modules=(
        "sbir_bench.methods.baseline",
        "sbir_bench.methods.cvae",
        "sbir_bench.methods.closed_form_zsl",
        "sbir_bench.methods.direct_regression",
        "sbir_bench.methods.siamese",
        "sbir_bench.methods.triplet",
        "sbir_bench.methods.caae",
        "sbir_bench.methods.gdh",
        "sbir_bench.methods.dsh",
        "sbir_bench.methods.fine_grained",
        "sbir_bench.methods.shape_siamese",
        "sbir_bench.methods.shape_cdnn",
        "sbir_bench.methods.shape_dcml",
        "sbir_bench.methods.shape_cgn",
        "sbir_bench.methods.shape_dca",
        "sbir_bench.methods.shape_sketch2voxel",
        "sbir_bench.methods.open_search",
        "sbir_bench.methods.shape_wasserstein",
    ),
    entry_point_group=METHOD_ENTRY_POINTS,
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


def method_class(method_cfg: Mapping[str, Any]) -> type:
    """The class a method config names: its ``_target_`` (a dotted path, e.g. a lab's own package) when
    set, else its registered ``name``. A ``_target_`` class must subclass RetrievalMethod."""
    target = method_cfg.get("_target_")
    if not target:
        return METHODS.get(method_cfg["name"])
    from hydra.utils import get_class

    from sbir_bench.methods.base import RetrievalMethod

    try:
        cls = get_class(target)
    except Exception as error:  # Hydra wraps the import error; its message names the missing module
        raise UnknownNameError(f"method._target_ {target!r} cannot be imported: {error}") from error
    if not (isinstance(cls, type) and issubclass(cls, RetrievalMethod)):
        raise UnknownNameError(f"method._target_ {target!r} is not a RetrievalMethod subclass")
    return cls


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)
