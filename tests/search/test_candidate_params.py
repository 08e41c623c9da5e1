import optuna

from automc.search.driver import suggest_params
from automc.search.space import LayerOptions, ResolvedSpace, candidate_from_params
from automc.types import LayerChoice


def test_suggest_params_names_only_multi_choice_options(space):
    trial = optuna.create_study().ask()
    params = suggest_params(space, trial)
    assert set(params) == {"a.bits", "a.prune", "b.bits", "b.prune", "c.bits", "c.rank", "blk.cell"}
    assert params["a.bits"] in ("32/32", "8/8")
    assert params == trial.params


def test_candidate_from_params_reads_every_layer_and_cell(space):
    cand = candidate_from_params(space, {"a.bits": "8/8", "b.prune": 0.25, "c.rank": 0.5, "blk.cell": "skip"})
    assert cand.choice("a") == LayerChoice(8, 8, 0.0, 1.0)
    assert cand.choice("b") == LayerChoice(32, 32, 0.25, 1.0)
    assert cand.choice("c") == LayerChoice(32, 32, 0.0, 0.5)
    assert cand.cells == {"blk": "skip"}
    assert candidate_from_params(space, {}).cells == {"blk": "keep"}


def test_single_option_block_takes_its_only_cell():
    space = ResolvedSpace("t", (LayerOptions("a", ((8, 8),), (0.0,), (1.0,)),), {"blk": ("half",)}, None, None)
    assert candidate_from_params(space, {}).cells == {"blk": "half"}
