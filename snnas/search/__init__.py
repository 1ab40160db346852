"""Policy search: strategies, the alternating search loop and strategy comparisons."""

from snnas.search._config import REWARD_MODES, SearchConfig, load_search_config
from snnas.search._loop import SearchResult, run_search
from snnas.search._reward import PolicyScorer, make_reward, pareto_front
from snnas.search.strategies import STRATEGIES, Strategy, make_strategy, strategy_names

__all__ = [
    "REWARD_MODES",
    "STRATEGIES",
    "PolicyScorer",
    "SearchConfig",
    "SearchResult",
    "Strategy",
    "load_search_config",
    "make_reward",
    "make_strategy",
    "pareto_front",
    "run_search",
    "strategy_names",
]
