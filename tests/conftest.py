import os

# Keep Ray quiet and small in tests; the test suite shares one local instance per session.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
