"""Yokogawa optical spectrum analysers."""
