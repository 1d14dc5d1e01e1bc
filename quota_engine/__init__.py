"""quota_engine package."""
