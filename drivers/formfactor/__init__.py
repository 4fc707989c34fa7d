"""FormFactor (Cascade Microtech) wafer probers."""
