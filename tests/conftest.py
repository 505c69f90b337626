import os

import pytest

# Keep Ray quiet and small in tests.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True, scope="module")
def _no_ray_across_modules():
    """A Ray driver left running in the pytest process outlives its tests and has taken the whole
    session down when later tests SIGKILL their own CLI subprocesses; each module starts clean."""
    yield
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
