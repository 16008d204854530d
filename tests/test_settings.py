"""Every setting is documented: a setting the README does not name is a bug."""

from __future__ import annotations

import re
from pathlib import Path

from strongroom.server.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_settings_table() -> None:
    text = README.read_text()
    documented = set(re.findall(r"^\| `(STRONGROOM_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    expected = {f"STRONGROOM_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README"
    client_side = {"STRONGROOM_API_KEY", "STRONGROOM_BASE_URL", "STRONGROOM_TEST_POSTGRES_URL"}
    assert documented - expected - client_side == set(), "README documents unknown settings"


def test_settings_come_from_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STRONGROOM_MAX_VALUE_BYTES", "123")
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", "postgresql://u@h:5432/d")
    settings = Settings()
    assert settings.max_value_bytes == 123
    assert settings.database_url == "postgresql://u@h:5432/d"
