"""Product test sequences and their limits files.

A sequence module defines `SEQUENCE`; its steps use instruments only through
`drivers.interfaces` and record measurements that the engine judges against
`sequences/limits/<product>.toml`.
"""
