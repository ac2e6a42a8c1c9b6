"""The control code's native finiteness test agrees with math.isfinite on every kind of float."""

from __future__ import annotations

import math

import pytest

from agent.control.begin import finite


@pytest.mark.parametrize("x", [0.0, -0.0, 1.5, -1e308, 1e308, 5e-324, math.inf, -math.inf, math.nan])
def test_finite_is_math_isfinite(x: float) -> None:
    assert finite(x) is math.isfinite(x)
