"""Operator settings: one explicit load, errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.settings import SettingsError, load_settings


def test_defaults_put_all_state_under_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.var_dir == tmp_path / "var"
    assert settings.silos_dir == tmp_path / "var" / "silos"
    assert settings.datasets_dir == tmp_path / "var" / "datasets"
    assert settings.keys_dir == tmp_path / "var" / "keys"
    assert settings.policy_dir == tmp_path / "policies" / "demo"


def test_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "tre.yaml").write_text("var_dir: state\npolicy_dir: policy\n", encoding="utf-8")
    settings = load_settings(site / "tre.yaml", env={})
    assert settings.var_dir == site / "state"
    assert settings.policy_dir == site / "policy"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "tre.yaml").write_text("var_dir: state\n", encoding="utf-8")
    settings = load_settings(
        None,
        env={
            "TRE_SETTINGS": str(tmp_path / "tre.yaml"),
            "TRE_VAR_DIR": str(tmp_path / "elsewhere"),
        },
    )
    assert settings.var_dir == tmp_path / "elsewhere"


def test_unknown_setting_names_the_file_and_the_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "tre.yaml"
    path.write_text("var_directory: x\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == (
        f"{path}: var_directory: Extra inputs are not permitted "
        "(allowed settings: policy_dir, var_dir, hub, audit, review, mirror, publish, oidc)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a list\n", "expected a mapping of setting: value, got list"),
        ("var_dir: [\n", "not valid YAML"),
    ],
)
def test_malformed_settings_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tre.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=f"^{path}: {problem}"):
        load_settings(path, env={})


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file: No such file"):
        load_settings(tmp_path / "absent.yaml", env={})


def test_nested_hub_settings_name_their_field(tmp_path: Path) -> None:
    path = tmp_path / "tre.yaml"
    path.write_text("hub:\n  mem_limit: lots\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"hub\.mem_limit: String should match pattern"):
        load_settings(path, env={})
    path.write_text("hub:\n  hub_port: 9999\n  image: my/image:1\n", encoding="utf-8")
    settings = load_settings(path, env={})
    assert (settings.hub.hub_port, settings.hub.image) == (9999, "my/image:1")


def test_audit_retention_cannot_be_set_below_one_year(tmp_path: Path) -> None:
    """EHDS Art. 73: logs of access and activity are kept at least one year."""
    path = tmp_path / "tre.yaml"
    path.write_text("audit:\n  retention_days: 364\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"audit\.retention_days: Input should be greater"):
        load_settings(path, env={})
    path.write_text("audit:\n  retention_days: 365\n", encoding="utf-8")
    assert load_settings(path, env={}).audit.retention_days == 365
