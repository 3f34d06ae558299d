"""Data quality: the rule catalogue, its engines, and what quality officers read."""
