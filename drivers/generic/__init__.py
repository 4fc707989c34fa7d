"""Instruments whose command set follows SCPI conventions without a confirmed vendor manual."""
