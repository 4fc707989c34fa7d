"""Keithley (Tektronix) source-measure units."""
