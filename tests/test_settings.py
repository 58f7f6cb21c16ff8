from pathlib import Path

import pytest

from sounding.settings import ConfigError, deep_overrides, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("SOUNDING_CONFIG", "SOUNDING_HOME", "SOUNDING_LLM__MODEL", "SOUNDING_SEARCH__K"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_defaults_use_xdg_cache_home(tmp_path):
    s = load_settings()
    assert s.home == tmp_path / "cache" / "sounding"
    assert s.llm.backend == "llama"
    assert s.models_dir == s.home / "models"


def test_layers_defaults_file_env_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[llm]\nmodel = "from-file"\nn_threads = 3\n[search]\nk = 7\n')
    s = load_settings(cfg)
    assert (s.llm.model, s.llm.n_threads, s.search.k) == ("from-file", 3, 7)
    monkeypatch.setenv("SOUNDING_LLM__MODEL", "from-env")
    s = load_settings(cfg)
    assert (s.llm.model, s.llm.n_threads) == ("from-env", 3)  # env beats file, file beats default
    s = load_settings(cfg, **deep_overrides(llm__model="from-flag", search__k=None))
    assert (s.llm.model, s.search.k) == ("from-flag", 7)  # flags beat env; an unset flag changes nothing


def test_sounding_home_and_config_env(tmp_path, monkeypatch):
    cfg = tmp_path / "x.toml"
    cfg.write_text('[budget]\nunit = "flops"\n')
    monkeypatch.setenv("SOUNDING_CONFIG", str(cfg))
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "h"))
    s = load_settings()
    assert s.budget.unit == "flops"
    assert s.home == tmp_path / "h"


def test_xdg_config_file_is_picked_up(tmp_path):
    path = tmp_path / "cfg" / "sounding" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[search]\nbackend = "bm25"\n')
    assert load_settings().search.backend == "bm25"


@pytest.mark.parametrize(
    ("text", "needle"),
    [("[llm\nmodel=", "cannot read config file"), ('[llm]\nbackend = "gpu-magic"\n', "invalid settings")],
)
def test_bad_config_is_a_clear_error(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path(tmp_path / "nope.toml"))
