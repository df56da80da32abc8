"""The fleet's fixtures (a broker, a project with PostgreSQL state, workers stopped after each test)."""
from tests.test_fleet import _stop_workers, broker, fleet  # noqa: F401
