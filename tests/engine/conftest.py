from tests.plan.conftest import parity_exported, plan_space  # noqa: F401  (shared fixtures)
