"""Temptronic (inTEST Thermal Solutions) ThermoStream temperature forcing systems."""
