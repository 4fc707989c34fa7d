"""Keysight (formerly Agilent) lightwave instruments."""
