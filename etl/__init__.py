"""Rare Tumour Warehouse: pools paediatric rare-tumour data into one harmonised warehouse."""

__version__ = "0.1.0"
