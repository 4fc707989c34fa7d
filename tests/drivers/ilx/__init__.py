"""Tests of the ILX Lightwave drivers."""
