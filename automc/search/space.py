"""Search spaces (search_spaces/*.yaml): which layer kinds get which choices.

``resolve_space`` turns a space and a model's LayerTable into per-layer option lists, checked
against the hardware profile, so that the search samples only what can run.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automc._paths import SPACES_DIR
from automc._yaml import load_yaml_model, resolve_named_file
from automc.errors import UserInputError
from automc.model.introspect import LayerTable
from automc.profiles import HardwareProfile
from automc.types import FP32_BITS, Candidate, LayerChoice

CELL_CHOICES = ("keep", "skip", "half")
LOW_RANK_KINDS = ("pwconv", "linear")  # a k×k conv is not factorized (lowrank.py)


def check_min_accuracy(value: float | None, field: str) -> None:
    """An accuracy floor is a fraction in (0, 1] (0.97, not 97); a UserInputError naming ``field``."""
    if value is not None and not 0.0 < value <= 1.0:
        raise UserInputError(f"{field}: {value} is not an accuracy fraction in (0, 1]; e.g. 0.97 for 97%")


def parse_bits(text: str) -> tuple[int, int]:
    """``"8/8"`` → (w_bits, a_bits)."""
    try:
        w, a = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ValueError(f"bit choice '{text}' is not 'W/A' (e.g. '8/8', '32/32')") from None
    return w, a


class KindChoices(BaseModel):
    """Choices for one layer kind (or one override)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bits: list[str] = Field(default_factory=lambda: ["32/32"])
    prune: list[float] = Field(default_factory=lambda: [0.0])
    rank: list[float] = Field(default_factory=lambda: [1.0])

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("is empty: give at least one choice, e.g. ['32/32', '8/8']")
        for b in v:
            w, a = parse_bits(b)
            for x in (w, a):
                if not 1 <= x <= 32:
                    raise ValueError(f"bit-width {x} in '{b}' is outside 1..32")
        return v

    @field_validator("prune")
    @classmethod
    def _prune(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("is empty: give at least one choice, e.g. [0.0, 0.5]")
        for r in v:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"pruning ratio {r} must be in [0, 1): 0 keeps every channel, 0.5 removes half")
        return v

    @field_validator("rank")
    @classmethod
    def _rank(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("is empty: give at least one choice, e.g. [1.0, 0.5]")
        for r in v:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"rank fraction {r} must be in (0, 1]: 1 keeps full rank")
        return v


class Override(KindChoices):
    match: str  # fnmatch pattern on layer names


class SpaceConfig(BaseModel):
    """A search space: choices per layer kind, per-name overrides, skipped layers, budgets."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    description: str = ""
    kinds: dict[str, KindChoices]
    overrides: list[Override] = Field(default_factory=list)
    skip: list[str] = Field(default_factory=list)  # fnmatch patterns of layers left untouched
    cells: list[str] = Field(default_factory=lambda: ["keep"])
    max_latency_ms: float | None = None
    max_size_bytes: int | None = None
    min_accuracy: float | None = None  # the accuracy floor, a fraction: points below are infeasible

    @field_validator("min_accuracy")
    @classmethod
    def _min_accuracy(cls, v: float | None) -> float | None:
        check_min_accuracy(v, "min_accuracy")
        return v

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: dict[str, KindChoices]) -> dict[str, KindChoices]:
        for k in v:
            if k not in ("conv", "dwconv", "pwconv", "linear"):
                raise ValueError(f"unknown layer kind '{k}'; use conv, dwconv, pwconv or linear")
        return v

    @field_validator("cells")
    @classmethod
    def _cells(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("is empty: give at least one cell choice, e.g. ['keep']")
        for c in v:
            if c not in CELL_CHOICES:
                raise ValueError(f"unknown cell '{c}'; use {list(CELL_CHOICES)}")
        return v


@dataclass(frozen=True)
class LayerOptions:
    """The choices one layer can take in a resolved space."""

    name: str
    bits: tuple[tuple[int, int], ...]
    prune: tuple[float, ...]
    rank: tuple[float, ...]


@dataclass(frozen=True)
class ResolvedSpace:
    """A space bound to one model and profile: what the search samples from."""

    name: str
    layers: tuple[LayerOptions, ...]
    cells: dict[str, tuple[str, ...]]  # block name → cell choices
    max_latency_ms: float | None
    max_size_bytes: int | None
    min_accuracy: float | None = None

    @property
    def size(self) -> int:
        """Number of distinct candidates."""
        n = 1
        for o in self.layers:
            n *= len(o.bits) * len(o.prune) * len(o.rank)
        for c in self.cells.values():
            n *= len(c)
        return n

    def uniform(self, bits: tuple[int, int] | None = None, prune: float = 0.0, rank: float = 1.0) -> dict[str, Any]:
        """Optuna params of a uniform baseline: every layer at ``bits``/``prune``/``rank`` where offered."""
        params: dict[str, Any] = {}
        for o in self.layers:
            want = f"{bits[0]}/{bits[1]}" if bits else f"{FP32_BITS}/{FP32_BITS}"
            if len(o.bits) > 1:
                params[f"{o.name}.bits"] = want if tuple(int(x) for x in want.split("/")) in o.bits else f"{o.bits[0][0]}/{o.bits[0][1]}"
            if len(o.prune) > 1:
                params[f"{o.name}.prune"] = prune if prune in o.prune else o.prune[0]
            if len(o.rank) > 1:
                params[f"{o.name}.rank"] = rank if rank in o.rank else max(o.rank)
        for block, choices in self.cells.items():
            if len(choices) > 1:
                params[f"{block}.cell"] = "keep"
        return params


def param_options(space: ResolvedSpace) -> dict[str, list[Any]]:
    """Every choice of ``space`` with more than one option, as Optuna param name → options.

    Names: ``"{layer}.bits"`` (``"W/A"`` strings such as ``"8/8"``), ``"{layer}.prune"``,
    ``"{layer}.rank"``, ``"{block}.cell"``. Single-option choices are left out: Optuna needs no
    param for them and :func:`candidate_from_params` fills them in.
    """
    out: dict[str, list[Any]] = {}
    for o in space.layers:
        if len(o.bits) > 1:
            out[f"{o.name}.bits"] = [f"{w}/{a}" for w, a in o.bits]
        if len(o.prune) > 1:
            out[f"{o.name}.prune"] = list(o.prune)
        if len(o.rank) > 1:
            out[f"{o.name}.rank"] = list(o.rank)
    for block, choices in space.cells.items():
        if len(choices) > 1:
            out[f"{block}.cell"] = list(choices)
    return out


def load_space(name_or_path: str) -> SpaceConfig:
    """A shipped space by name (``default``) or a path to a space YAML file."""
    path = resolve_named_file(name_or_path, SPACES_DIR, "space", "--space")
    return load_yaml_model(path, SpaceConfig, "search space")


def resolve_space(space: SpaceConfig, table: LayerTable, profile: HardwareProfile,
                  cell_blocks: dict[str, bool]) -> ResolvedSpace:
    """Bind ``space`` to a model's layers. ``cell_blocks`` maps block name → can it be skipped."""
    where = f"space '{space.name}'"
    layers = []
    dropped: set[str] = set()
    for info in table:
        if any(fnmatch.fnmatchcase(info.name, p) for p in space.skip):
            continue
        kind = space.kinds.get(info.kind)
        for o in space.overrides:
            if fnmatch.fnmatchcase(info.name, o.match):
                kind = o
        if kind is None:
            continue
        bits = tuple(parse_bits(b) for b in kind.bits)
        for w, a in bits:
            profile.check_bits(w, f"{where}: field 'kinds.{info.kind}.bits'")
            profile.check_bits(a, f"{where}: field 'kinds.{info.kind}.bits'")
        rank = tuple(kind.rank) if info.kind in LOW_RANK_KINDS else (1.0,)
        prune = tuple(kind.prune) if info.kind != "linear" else (0.0,)
        if rank != tuple(kind.rank) and kind.rank != [1.0]:
            dropped.add(f"'rank' on {info.kind} layers (low rank applies to {' and '.join(LOW_RANK_KINDS)})")
        if prune != tuple(kind.prune) and kind.prune != [0.0]:
            dropped.add("'prune' on linear layers (structured pruning applies to convolutions)")
        layers.append(LayerOptions(info.name, bits, prune, rank))
    for what in sorted(dropped):
        warnings.warn(f"{where}: ignoring {what}; remove it from the space", UserWarning, stacklevel=2)
    if not layers:
        raise UserInputError(f"{where} matches no layer of the model (layers: {list(table.names)[:6]}...); "
                             "fix its 'kinds' or 'skip' fields")
    cells = {}
    for block, can_skip in cell_blocks.items():
        choices = tuple(c for c in space.cells if c != "skip" or can_skip)
        if len(choices) > 1:
            cells[block] = choices
    return ResolvedSpace(space.name, tuple(layers), cells, space.max_latency_ms, space.max_size_bytes,
                         space.min_accuracy)


def choice_from_params(options: LayerOptions, params: dict[str, Any]) -> LayerChoice:
    """Read one layer's choice out of Optuna params (missing keys take the only option)."""
    bits = params.get(f"{options.name}.bits")
    w, a = parse_bits(bits) if bits is not None else options.bits[0]
    return LayerChoice(
        w_bits=w, a_bits=a,
        prune=float(params.get(f"{options.name}.prune", options.prune[0])),
        rank=float(params.get(f"{options.name}.rank", options.rank[0])),
    )


def candidate_from_params(space: ResolvedSpace, params: dict[str, Any]) -> Candidate:
    """The Candidate that Optuna ``params`` describe: a choice for every layer of ``space``.

    Cells come from ``"{block}.cell"`` params; a block without one keeps its trained cell.

    >>> space = ResolvedSpace("t", (LayerOptions("a", ((32, 32), (8, 8)), (0.0,), (1.0,)),), {}, None, None)
    >>> candidate_from_params(space, {"a.bits": "8/8"}).choice("a").w_bits
    8
    """
    layers = {o.name: choice_from_params(o, params) for o in space.layers}
    # A block offered one cell only is never suggested, so it takes that cell (as layers do).
    cells = {block: str(params.get(f"{block}.cell", "keep" if "keep" in choices or not choices else choices[0]))
             for block, choices in space.cells.items()}
    return Candidate(layers=layers, cells=cells)

