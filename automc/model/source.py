"""Where a search's model comes from, recorded in ``run.json`` so that every later command
(``pareto``, ``export``, ``validate``) can rebuild it: a built-in name, a user's factory
``path/to/file.py:function``, a saved ``torch.export`` program with its data file
(``model.pt2`` + ``--data data.pt``, see ``model.exported``), or a model an API caller held in
memory.

A factory is a function of no arguments returning a mapping (or an object with these
attributes):

| key | what | required |
|---|---|---|
| ``model`` | the trained ``nn.Module`` | yes |
| ``example_input`` | one input batch (a tensor) at the shape to deploy | yes |
| ``calib_batches`` | a few input batches (tensors): activation ranges, BatchNorm | yes |
| ``evaluate`` | ``evaluate(model) -> float``, accuracy as a fraction 0–1 | one of the two |
| ``val`` | ``(inputs, labels)``: top-1 accuracy on them is the evaluate | one of the two |
| ``train_batches`` | unlabelled training inputs (tensors), for recovery | no |

Example ``examples/my_model.py`` (README) and ``automc search --model examples/my_model.py:build``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from automc.errors import UserInputError
from automc.model.data import accuracy

if TYPE_CHECKING:
    from automc.run_dir import RunInfo
from automc.model.zoo import MODELS, BuiltinModel, load_builtin

BUILTIN, FACTORY, EXPORTED, MEMORY = "builtin", "factory", "exported", "memory"
EXPORTED_PROGRAM, EXPORTED_DATA = "model.pt2", "data.pt"  # an exported program's copy in its run directory


@dataclass(frozen=True)
class ModelSource:
    """How to rebuild a run's model: ``kind`` is ``builtin`` (``spec`` a zoo name), ``factory``
    (``spec`` an absolute ``file.py:function``), ``exported`` (``spec`` an absolute ``.pt2``
    path, ``data`` its data file's) or ``memory`` (``spec`` a label; the caller passes the
    model again to reopen the run)."""

    kind: str
    spec: str
    data: str = ""

    @property
    def label(self) -> str:
        """A short name for run directories and tables."""
        if self.kind == FACTORY:
            path, _, function = self.spec.rpartition(":")
            return f"{Path(path).stem}-{function}"
        if self.kind == EXPORTED:
            return Path(self.spec).stem
        return self.spec

    def kept_in(self, run_dir: Path) -> "ModelSource":
        """An exported program's source after copying the program and its data into ``run_dir``
        (recorded relative to it, so the run reopens wherever it is moved); others unchanged."""
        if self.kind != EXPORTED:
            return self
        import shutil

        for src, name in ((self.spec, EXPORTED_PROGRAM), (self.data, EXPORTED_DATA)):
            if Path(src).resolve() != (Path(run_dir) / name).resolve():
                shutil.copyfile(src, Path(run_dir) / name)
        return ModelSource(EXPORTED, EXPORTED_PROGRAM, EXPORTED_DATA)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "spec": self.spec, **({"data": self.data} if self.data else {})}

    @classmethod
    def from_run_info(cls, info: "RunInfo") -> "ModelSource":
        """The source a run records (runs written before sources were recorded named a
        built-in, or ``custom`` for an API model)."""
        if info.model_source is not None:
            return cls(**info.model_source)
        return cls(BUILTIN, info.model) if info.model in MODELS else cls(MEMORY, info.model)


def parse_model_option(text: str, data: str | None = None) -> ModelSource:
    """The ``--model`` option (a built-in name, ``path/to/file.py:function``, or a ``.pt2``
    program) and ``--data`` (the data file a ``.pt2`` needs)."""
    if data and not text.endswith(".pt2"):
        raise UserInputError(f"--data: only a --model .pt2 program takes a data file; '{text}' brings its own data")
    if text.endswith(".pt2"):
        if not Path(text).is_file():
            raise UserInputError(f"--model {text}: no such file; give the path of a torch.export.save'd program")
        if not data or not Path(data).is_file():
            raise UserInputError(f"--data: a --model .pt2 needs its data file ({'no file ' + repr(data) if data else 'none given'}); "
                                 "torch.save a dict with calib, val_x, val_y (optionally train)")
        return ModelSource(EXPORTED, str(Path(text).resolve()), str(Path(data).resolve()))
    if text in MODELS:
        return ModelSource(BUILTIN, text)
    path, sep, function = text.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise UserInputError(f"--model: '{text}' is neither a built-in model ({', '.join(sorted(MODELS))}), "
                             "path/to/file.py:function, nor a .pt2 program")
    if not Path(path).is_file():
        raise UserInputError(f"--model {text}: no file '{path}'; give the path of the Python file defining {function}()")
    return ModelSource(FACTORY, f"{Path(path).resolve()}:{function}")


def load_model(source: ModelSource, verbose: bool = False, run_dir: Path | None = None) -> BuiltinModel:
    """Build the model a source names, with its data and evaluate (paths relative to
    ``run_dir`` where a run keeps its own copy)."""
    if source.kind == BUILTIN:
        return load_builtin(source.spec, verbose=verbose)
    if source.kind == FACTORY:
        return _from_factory(source.spec)
    if source.kind == EXPORTED:
        from automc.model.exported import load_exported

        base = Path(run_dir) if run_dir else Path()
        return load_exported(str(base / source.spec), str(base / source.data))
    raise UserInputError(f"the run's model '{source.spec}' was held in memory by the Python API; reopen the run with "
                         "automc.open_run(RUN, model=..., example_input=..., evaluate=...)")


def _import_factory(spec: str) -> Callable[[], Any]:
    path, _, function = spec.rpartition(":")
    if not Path(path).is_file():
        raise UserInputError(f"--model {spec}: no file '{path}'")
    module_name = f"automc_user_model_{abs(hash(path))}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling in the user's file need it
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error is theirs to fix, in one line
        raise UserInputError(f"--model {spec}: importing '{path}' raised {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, function, None)
    if not callable(factory):
        raise UserInputError(f"--model {spec}: '{path}' defines no function '{function}'")
    return factory


def _field(built: Any, key: str) -> Any:
    if isinstance(built, dict):
        return built.get(key)
    return getattr(built, key, None)


def _from_factory(spec: str) -> BuiltinModel:
    factory = _import_factory(spec)
    try:
        built = factory()
    except Exception as exc:
        raise UserInputError(f"--model {spec}: the factory raised {type(exc).__name__}: {exc}") from exc

    def need(key: str, ok: Callable[[Any], bool], what: str) -> Any:
        value = _field(built, key)
        if value is None or not ok(value):
            raise UserInputError(f"--model {spec}: the factory's '{key}' must be {what} (see `automc search --help`)")
        return value

    model = need("model", lambda v: isinstance(v, nn.Module), "an nn.Module")
    example = need("example_input", lambda v: isinstance(v, torch.Tensor), "a tensor")
    calib = tuple(need("calib_batches", lambda v: len(v) > 0 and all(isinstance(b, torch.Tensor) for b in v),
                       "a non-empty list of input tensors"))
    evaluate = _field(built, "evaluate")
    if evaluate is None:
        val = need("val", lambda v: len(v) == 2 and all(isinstance(t, torch.Tensor) for t in v),
                   "(inputs, labels) tensors, or give 'evaluate'")
        val_x, val_y = val
        evaluate = lambda m: accuracy(m, val_x, val_y)  # noqa: E731
    elif not callable(evaluate):
        raise UserInputError(f"--model {spec}: the factory's 'evaluate' must be a function model -> accuracy in 0..1")
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as exc:
        raise UserInputError(f"--model {spec}: the model does not run on its example_input of shape "
                             f"{list(example.shape)}: {type(exc).__name__}: {exc}") from exc
    train = _field(built, "train_batches")
    if train is not None and not all(isinstance(b, torch.Tensor) for b in train):
        raise UserInputError(f"--model {spec}: the factory's 'train_batches' must be a list of input tensors")
    return BuiltinModel(name=ModelSource(FACTORY, spec).label, model=model.eval(), example_input=example,
                        calib_batches=calib, evaluate=evaluate, train_batches=tuple(train or ()))
