"""Devantech (Robot Electronics) interface modules."""
