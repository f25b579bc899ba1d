"""Bridges to other Django apps."""
