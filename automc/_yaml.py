"""Load a YAML file into a pydantic model; every failure becomes one UserInputError line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from automc.errors import UserInputError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path, model: type[M], what: str) -> M:
    """Parse ``path`` as ``model``; errors name the file, the field and the fix."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserInputError(f"{path}:{where}: malformed YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a {what} must be a YAML mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserInputError(f"{path}: field '{field}': {err['msg']} (got {err.get('input')!r}); fix that field of the {what}") from None


def resolve_named_file(name_or_path: str, folder: Path, what: str, option: str) -> Path:
    """A shipped file by name (``folder/NAME.yaml``) or any path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UserInputError(f"{option}: {what} file '{path}' does not exist")
        return path
    candidate = folder / f"{name_or_path}.yaml"
    if not candidate.exists():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise UserInputError(f"{option}: unknown {what} '{name_or_path}'; choose one of {names} or give a path to a .yaml file")
    return candidate
