"""Swap venues: pool models and the pure math behind their quotes."""
