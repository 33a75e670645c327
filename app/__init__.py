"""Interchange: an LLM API proxy. Any client protocol to any backend, through one IR."""
__version__ = "0.1.0"
