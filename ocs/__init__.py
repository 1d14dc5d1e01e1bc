"""ocs package."""
