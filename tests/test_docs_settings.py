"""Every setting a user can give through the environment is in docs/api.md's settings table."""

from pathlib import Path

from jobs.settings import Settings

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def environment_name(field_name: str) -> str:
    alias = Settings.model_fields[field_name].validation_alias
    if alias is not None:  # AliasChoices: the first choice is the documented variable
        return str(alias.choices[0])
    return f"{Settings.model_config['env_prefix']}{field_name}".upper()


def test_every_setting_is_documented_in_the_api_settings_table():
    table = API_DOC.read_text()
    missing = [
        environment_name(name)
        for name in Settings.model_fields
        if f"| `{environment_name(name)}` |" not in table
    ]
    assert missing == [], f"docs/api.md's settings table lacks {missing}"
