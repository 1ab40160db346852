from tests.plan.conftest import plan_space  # noqa: F401  (the plan tests' space fixture)
