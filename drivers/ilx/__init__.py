"""ILX Lightwave (now Newport) laser diode and TEC controllers."""
