"""Pure, vectorised measurement analysis: eye, TDECQ, BER, LIV, spectra, yield.

No I/O and no instrument code here; functions take numpy arrays and return frozen dataclasses.
"""
