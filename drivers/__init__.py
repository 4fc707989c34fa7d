"""Instrument drivers: one module per real instrument model, behind capability interfaces.

Drivers speak documented command sets over pyvisa (pyvisa-py) or pyserial and never know whether
the far end is a real instrument or a simulated one.
"""
