"""Settings that were removed are refused by name, so a site file still carrying one is fixed
rather than silently half-read."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.model.config import load_site
from common.tomlcheck import ConfigError

from .fakes import DEMO_SITE


def test_ramp_return_s_is_refused_naming_the_key(tmp_path: Path) -> None:
    text = DEMO_SITE.read_text().replace("[control]\n", "[control]\nramp_return_s = 300\n", 1)
    assert "ramp_return_s" in text
    site = tmp_path / "site.toml"
    site.write_text(text)
    with pytest.raises(ConfigError, match=r"\[control\]: unknown key\(s\) 'ramp_return_s'"):
        load_site(site)
