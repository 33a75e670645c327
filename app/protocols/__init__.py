"""One module per wire protocol, the same shape each (see base.py)."""
