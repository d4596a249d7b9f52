"""archive_node.config: defaults, file and env lookup, one-line errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from archive_node.config import (
    CONFIG_ENV,
    INDEX_URL_ENV,
    SETTINGS,
    Config,
    build_config,
    example_toml,
    load_config,
)
from archive_node.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """The node's own environment variables must not leak in from the developer's shell."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archive-node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def value_of(config: Config, name: str):
    section, key = name.split(".")
    return getattr(getattr(config, section), key)


def test_defaults_without_a_file():
    config = load_config()
    assert config.source == "built-in defaults"
    for setting in SETTINGS:
        expected = Path(setting.default) if setting.name == "storage.path" else setting.default
        assert value_of(config, setting.name) == expected, setting.name
    assert config.node.ae_title == "ARCHIVE"
    assert config.node.port == 11112
    assert config.storage.path == Path("var/storage")
    assert config.storage.fsync is True
    assert config.index.url == "sqlite:///var/index.sqlite3"


def test_file_values_override_defaults_and_others_stay(tmp_path):
    path = write_toml(
        tmp_path,
        '[node]\nae_title = "NORTH"\nport = 4242\n\n[storage]\npath = "/srv/dicom"\n'
        'on_duplicate = "replace"\nfsync = false\n',
    )
    config = load_config(path)
    assert config.source == str(path)
    assert config.node.ae_title == "NORTH"
    assert config.node.port == 4242
    assert config.storage.path == Path("/srv/dicom")
    assert config.storage.on_duplicate == "replace"
    assert config.storage.fsync is False
    # untouched keys keep their defaults
    assert config.node.max_associations == 32
    assert config.log.level == "INFO"


def test_config_env_var_is_used(tmp_path, monkeypatch):
    path = write_toml(tmp_path, "[node]\nport = 2104\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config = load_config()
    assert config.node.port == 2104
    assert config.source == str(path)


def test_explicit_path_wins_over_config_env_var(tmp_path, monkeypatch):
    env_file = write_toml(tmp_path, "[node]\nport = 2104\n")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[node]\nport = 3104\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(env_file))
    assert load_config(explicit).node.port == 3104


def test_empty_config_env_var_means_defaults(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")
    assert load_config().source == "built-in defaults"


def test_index_url_env_var_overrides_file(tmp_path, monkeypatch):
    path = write_toml(tmp_path, '[index]\nurl = "sqlite:///from/file.sqlite3"\n')
    assert load_config(path).index.url == "sqlite:///from/file.sqlite3"
    monkeypatch.setenv(INDEX_URL_ENV, "postgresql://archive@db.example:5432/archive")
    assert load_config(path).index.url == "postgresql://archive@db.example:5432/archive"
    assert build_config({}).index.url == "postgresql://archive@db.example:5432/archive"


@pytest.mark.parametrize(
    ("data", "names"),
    [
        pytest.param({"nodes": {"port": 1}}, "[nodes]", id="unknown-section"),
        pytest.param({"node": {"prot": 1}}, "node.prot", id="unknown-key"),
        pytest.param({"storage": {"fsynch": True}}, "storage.fsynch", id="unknown-key-storage"),
        pytest.param({"node": {"port": "11112"}}, "node.port", id="string-for-int"),
        pytest.param({"node": {"port": True}}, "node.port", id="bool-for-int"),
        pytest.param({"storage": {"min_free_mb": False}}, "storage.min_free_mb", id="bool-int"),
        pytest.param({"node": {"acse_timeout": "30"}}, "node.acse_timeout", id="str-for-float"),
        pytest.param({"node": {"acse_timeout": True}}, "node.acse_timeout", id="bool-for-float"),
        pytest.param({"storage": {"fsync": "yes"}}, "storage.fsync", id="string-for-bool"),
        pytest.param({"storage": {"fsync": 1}}, "storage.fsync", id="int-for-bool"),
        pytest.param({"index": {"url": 5}}, "index.url", id="int-for-string"),
        pytest.param({"node": {"port": 70000}}, "node.port", id="port-above-max"),
        pytest.param({"node": {"port": -1}}, "node.port", id="port-below-min"),
        pytest.param({"node": {"max_pdu": 100}}, "node.max_pdu", id="pdu-below-min"),
        pytest.param({"index": {"busy_timeout": 0}}, "index.busy_timeout", id="float-below-min"),
        pytest.param(
            {"storage": {"on_duplicate": "maybe"}}, "storage.on_duplicate", id="bad-choice"
        ),
        pytest.param({"log": {"level": "debug"}}, "log.level", id="bad-choice-case"),
        pytest.param({"node": {"ae_title": "A" * 17}}, "node.ae_title", id="ae-title-too-long"),
        pytest.param({"node": {"ae_title": "   "}}, "node.ae_title", id="ae-title-blank"),
        pytest.param({"node": {"ae_title": "A\\B"}}, "node.ae_title", id="ae-title-backslash"),
        pytest.param({"node": 5}, "node", id="section-not-a-table"),
        pytest.param({"node": {"fast_paths": "yes"}}, "node.fast_paths", id="fast-paths-str"),
        pytest.param({"node": {"fast_paths": 1}}, "node.fast_paths", id="fast-paths-int"),
        pytest.param(
            {"node": {"fast_paths": ["reactor", "turbo"]}}, "'turbo'", id="fast-paths-unknown"
        ),
        pytest.param({"node": {"fast_paths": [1]}}, "node.fast_paths", id="fast-paths-not-names"),
        pytest.param(
            {"node": {"untested_pynetdicom": "yes"}}, "node.untested_pynetdicom", id="untested-str"
        ),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(data, names):
    with pytest.raises(ConfigError) as info:
        build_config(data)
    message = str(info.value)
    assert names in message
    assert "\n" not in message


def test_bad_value_in_a_file_names_the_key(tmp_path):
    path = write_toml(tmp_path, '[node]\nport = "eleven"\n')
    with pytest.raises(ConfigError, match=r"node\.port: expected int, got str 'eleven'"):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (["reactor"], ("reactor",)),
        (["file_meta", "messages", "file_meta"], ("file_meta", "messages")),
        ([], ()),
    ],
)
def test_fast_paths_is_a_switch_or_the_speed_patches_to_take(value, expected):
    assert build_config({"node": {"fast_paths": value}}).node.fast_paths == expected


def test_range_message_says_the_limit():
    with pytest.raises(ConfigError, match=r"node\.port: 70000 is above the maximum 65535"):
        build_config({"node": {"port": 70000}})


def test_choice_message_lists_the_choices():
    with pytest.raises(ConfigError, match=r"storage\.on_duplicate: 'maybe' is not one of keep"):
        build_config({"storage": {"on_duplicate": "maybe"}})


def test_invalid_toml_syntax(tmp_path):
    path = write_toml(tmp_path, "[node\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="no such config file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_named_by_env_var(tmp_path, monkeypatch):
    path = tmp_path / "gone.toml"
    monkeypatch.setenv(CONFIG_ENV, str(path))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config()


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_ints_accepted_for_float_keys():
    config = build_config(
        {
            "node": {"acse_timeout": 5, "dimse_timeout": 7, "shutdown_grace": 0},
            "index": {"busy_timeout": 2},
        }
    )
    assert config.node.acse_timeout == 5.0 and isinstance(config.node.acse_timeout, float)
    assert config.node.dimse_timeout == 7.0 and isinstance(config.node.dimse_timeout, float)
    assert config.node.shutdown_grace == 0.0 and isinstance(config.node.shutdown_grace, float)
    assert config.index.busy_timeout == 2.0 and isinstance(config.index.busy_timeout, float)


def test_float_not_accepted_for_int_key():
    with pytest.raises(ConfigError, match=r"node\.port: expected int, got float"):
        build_config({"node": {"port": 104.0}})


def test_boundary_values_accepted():
    config = build_config({"node": {"port": 0, "max_pdu": 4096}, "storage": {"min_free_mb": 0}})
    assert config.node.port == 0
    assert config.node.max_pdu == 4096
    assert config.storage.min_free_mb == 0
    assert build_config({"node": {"port": 65535}}).node.port == 65535


def test_empty_sections_are_fine():
    config = build_config({"node": {}, "storage": {}, "index": {}, "log": {}})
    assert config == build_config({})


def test_example_toml_parses_back_to_the_defaults():
    text = example_toml()
    data = tomllib.loads(text)
    assert set(data) == {s.section for s in SETTINGS}
    assert {f"{section}.{key}" for section, table in data.items() for key in table} == {
        s.name for s in SETTINGS
    }
    for setting in SETTINGS:
        assert data[setting.section][setting.key] == setting.default, setting.name
    assert build_config(data) == build_config({})


def test_example_toml_documents_every_key():
    text = example_toml()
    for setting in SETTINGS:
        assert f"# {setting.help}" in text, setting.name
        for choice in setting.choices:
            assert choice in text
    assert text.endswith("\n")


def test_example_toml_loads_as_a_file(tmp_path):
    path = write_toml(tmp_path, example_toml())
    config = load_config(path)
    assert config.source == str(path)
    assert config.node == build_config({}).node
    assert config.storage == build_config({}).storage


def test_every_setting_has_help_and_a_valid_default():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)), "a key is declared twice"
    for setting in SETTINGS:
        assert setting.help.strip(), setting.name
        assert isinstance(setting.default, setting.type), setting.name
        if setting.choices:
            assert setting.default in setting.choices, setting.name
        if setting.minimum is not None:
            assert setting.default >= setting.minimum, setting.name
        if setting.maximum is not None:
            assert setting.default <= setting.maximum, setting.name
