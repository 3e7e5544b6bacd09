"""Settings: typed, validated at startup with readable errors, documented in step with the code."""

from pathlib import Path

import pytest

from quadracode_ray.config import (
    Settings,
    SettingsError,
    env_variable_names,
    load_settings,
    render_env_sample,
    render_markdown_table,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer variables or .env leak into these tests."""
    for name in env_variable_names() + ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url is None
    assert settings.ray_address is None
    assert settings.default_model == "scripted:default"
    assert settings.uses_scripted_model


def test_environment_variables_are_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUADRACODE_HTTP_PORT", "9123")
    monkeypatch.setenv("QUADRACODE_DATABASE_URL", "postgresql://u@db/x")
    settings = load_settings()
    assert settings.http_port == 9123
    assert settings.database_url == "postgresql://u@db/x"


def test_dotenv_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QUADRACODE_HTTP_PORT=9555\nANTHROPIC_API_KEY=sk-test\n")
    settings = load_settings()
    assert settings.http_port == 9555
    assert settings.default_model.startswith("anthropic:")


def test_standard_key_names_choose_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    settings = load_settings()
    assert settings.default_model.startswith("openai:")
    assert settings.openai_api_key.get_secret_value() == "sk-openai"
    assert "sk-openai" not in repr(settings)


def test_every_bad_value_is_named_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUADRACODE_HTTP_PORT", "not-a-port")
    monkeypatch.setenv("QUADRACODE_DATABASE_URL", "mysql://nope")
    monkeypatch.setenv("QUADRACODE_MODEL", "gemini:pro")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "QUADRACODE_HTTP_PORT" in message
    assert "QUADRACODE_DATABASE_URL" in message and "postgresql://" in message
    assert "QUADRACODE_MODEL" in message and "scripted, anthropic, openai" in message


def test_unknown_setting_in_dotenv_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QUADRACODE_HTTP_PROT=9000\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings()


def test_pool_bounds_are_checked() -> None:
    with pytest.raises(SettingsError, match="db_pool_min_size"):
        load_settings(db_pool_min_size=20, db_pool_max_size=5)


def test_to_env_round_trips_through_a_child_process_environment(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    original = load_settings(data_dir=tmp_path / "d", http_port=8123, model="scripted:fast",
                             auth_admin_owners=["root", "ops"], sandbox_network=["example.test:443"],
                             store_index_fields=["$.text", "$.title"], graphs={"mine": "pkg.mod:graph"})
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_a_json_dump_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    # As a Serve app's settings travel: dumped in JSON mode, given back as keyword arguments.
    original = load_settings(_env_file=None, data_dir=tmp_path / "d", graphs={"mine": "pkg.mod:graph"},
                             store_index_fields=["$.text"], fabric_resources={"fabric": 0.01},
                             model_prices={"scripted:x": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
                             auth_admin_owners=["root"], sandbox_network=["example.test:443"])
    dumped = original.model_dump(mode="json")
    assert load_settings(_env_file=None, **{k: v for k, v in dumped.items() if v is not None}) == original
    with pytest.raises(SettingsError, match="QUADRACODE_FABRIC_RESOURCES"):
        load_settings(_env_file=None, fabric_resources="not json")


def test_env_sample_documents_every_setting() -> None:
    sample = (ROOT / ".env.sample").read_text()
    assert sample == render_env_sample(), "run scripts/sync-config-docs"
    for name in env_variable_names():
        assert f"# {name}=" in sample


def test_readme_configuration_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert render_markdown_table() in readme, "run scripts/sync-config-docs"
    assert len(Settings.model_fields) == render_markdown_table().count("| `QUADRACODE_")
