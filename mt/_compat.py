"""The module paths from before the subpackages (issue 16) keep importing.

Run folders written before the move hold ``config.yaml`` files with class paths such as
``mt.rnn.RNNSeq2Seq`` or ``mt.module.WarmupLR``, and checkpoints name their model class the same
way (``mt_class``, LightningCLI's ``_class_path``). :data:`MOVED` maps each old module name to its
new one; :class:`_MovedModules`, installed on ``sys.meta_path`` by ``import mt``, answers an import
of an old name by importing the new module (on first use, so ``import mt`` stays free of torch) and
registering that same module object under the old name: ``mt.rnn.RNNSeq2Seq is
mt.models.rnn.RNNSeq2Seq``. The old ``mt.data`` module is now the package ``mt.data``, which
exports its names itself (``mt/data/__init__.py``).
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

#: old module name -> the module it is now
MOVED = {
    "mt.module": "mt.models.module",
    "mt.transformer": "mt.models.transformer",
    "mt.rnn": "mt.models.rnn",
    "mt.lstm": "mt.models.lstm",
    "mt.search": "mt.models.search",
    "mt.tokenizer": "mt.data.tokenizer",
    "mt.corpora": "mt.data.corpora",
    "mt.synthetic": "mt.data.synthetic",
    "mt.lines": "mt.data.lines",
    "mt.evaluation": "mt.eval.evaluation",
    "mt.compare": "mt.eval.compare",
    "mt.reporting": "mt.eval.reporting",
    "mt.evaluate_cli": "mt.eval.evaluate_cli",
    "mt.gradients": "mt.eval.gradients",
    "mt.throughput": "mt.eval.throughput",
    "mt.translate": "mt.tools.translate",
    "mt.export": "mt.tools.export",
    "mt.benchmark": "mt.tools.benchmark",
}


class _MovedModules:
    """Meta-path finder and loader of the old module names in :data:`MOVED`."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        return ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # a placeholder module, replaced in exec_module

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name after this call,
        # so the old name becomes the new module itself, with its own __name__ and __spec__.
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def lazy_exports(namespace: dict[str, object], exports: dict[str, str]) -> tuple[object, object]:
    """Module ``__getattr__`` and ``__dir__`` for a package that exports ``exports`` (name -> the
    module that defines it) on first use; ``namespace`` is the package's ``globals()``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
