"""Every protocol module has the shape base.py describes, checked at import."""
from __future__ import annotations

import types

import pytest

from app.protocols import MODULES, check_shape, protocol_module


def test_every_protocol_module_has_the_shape():
    for name in MODULES:
        protocol_module(name)  # raises TypeError naming what is missing


def test_a_module_missing_a_piece_is_refused():
    broken = types.ModuleType("app.protocols.broken")
    broken.build_body = broken.parse_response = broken.parse_error = lambda *a: None
    broken.parse_request = lambda *a: None
    with pytest.raises(TypeError, match="StreamParser.*is_content_frame.*format_response"):
        check_shape("broken", broken)
