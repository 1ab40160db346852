import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snnas.space import all_permutations, derangements, from_lehmer, perm_rank, senders, to_lehmer


def test_table3_ids_are_lexicographic():
    perms = all_permutations(4)
    assert len(perms) == 24
    # The paper's Table 3: id 7 swaps (0,1) and (2,3); id 12 is 2,0,1,3; id 23 is 3,2,1,0.
    assert perms[0] == (0, 1, 2, 3)
    assert perms[7] == (1, 0, 3, 2)
    assert perms[12] == (2, 0, 1, 3)
    assert perms[23] == (3, 2, 1, 0)


def test_derangements_of_four():
    d = derangements(4)
    assert len(d) == 9  # !4
    assert all(all(p[i] != i for i in range(4)) for p in d)
    # Table 3's communication-intensive ids.
    ids = sorted(all_permutations(4).index(p) for p in d)
    assert ids == [7, 9, 10, 13, 16, 17, 18, 22, 23]


@pytest.mark.parametrize("groups", [2, 3, 4, 5])
def test_lehmer_round_trip_and_rank(groups):
    for i, perm in enumerate(itertools.permutations(range(groups))):
        digits = to_lehmer(perm)
        assert len(digits) == groups
        assert all(0 <= d < groups - j for j, d in enumerate(digits))
        assert from_lehmer(digits) == perm
        assert perm_rank(perm) == i
    assert len(all_permutations(groups)) == math.factorial(groups)


def test_from_lehmer_rejects_out_of_range_digit():
    with pytest.raises(ValueError, match="digit 1"):
        from_lehmer([0, 3, 0, 0])


@given(st.permutations(list(range(6))))
def test_lehmer_property(perm):
    assert from_lehmer(to_lehmer(perm)) == tuple(perm)


def test_senders_counts_non_fixed_points():
    assert senders((0, 1, 2, 3)) == 0
    assert senders((2, 0, 1, 3)) == 3
    assert senders((1, 0, 3, 2)) == 4
