"""Accounts, subscriptions and buckets: their model and validation, provisioning from
documents, and balance actions (top-ups and adjustments)."""
