import pytest

from automc.search.space import ResolvedSpace

from search_toys import make_space


@pytest.fixture
def space() -> ResolvedSpace:
    return make_space()
