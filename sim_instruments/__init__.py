"""Simulated instruments and the physical world they share.

Each simulated instrument is a server (a SCPI socket on loopback or a pty serial device) speaking
its real model's command subset; all of them read one `World`, so their readings agree the way a
real bench's do. Nothing in station, drivers or sequences imports this package at run time.
"""
