"""Search spaces: the TOML DSL, labelled decisions and policies."""

from snnas.space._config import (
    DTYPES,
    ENCODERS,
    DecisionSpec,
    NetworkConfig,
    ParityConfig,
    SpaceConfig,
    SplitConfig,
)
from snnas.space._permutations import (
    Permutation,
    all_permutations,
    derangements,
    from_lehmer,
    perm_rank,
    senders,
    to_lehmer,
)
from snnas.space._space import (
    Decision,
    ParityPoint,
    PointPolicy,
    Policy,
    SearchSpace,
    load_space,
    policy_json,
    space_from_text,
)

__all__ = [
    "DTYPES",
    "ENCODERS",
    "Decision",
    "DecisionSpec",
    "NetworkConfig",
    "ParityConfig",
    "ParityPoint",
    "Permutation",
    "PointPolicy",
    "Policy",
    "SearchSpace",
    "SpaceConfig",
    "SplitConfig",
    "all_permutations",
    "derangements",
    "from_lehmer",
    "load_space",
    "perm_rank",
    "policy_json",
    "senders",
    "space_from_text",
    "to_lehmer",
]
