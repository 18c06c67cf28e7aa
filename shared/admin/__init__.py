"""Changing what the app does and keeps: export and connection definitions, and purging
stored digests."""
