from __future__ import annotations

from pathlib import Path

import pytest

from deployctl import spec
from deployctl.errors import InputError


def test_embedded_defaults() -> None:
    s = spec.parse("")
    assert s.serve.bind == "127.0.0.1" and s.serve.port == 8080
    assert s.engine == "tgi" and s.image is None  # no image: the engine's pinned one (test_engines.py)
    assert s.model.preset and s.gpus == 1


def test_errors_name_the_key_and_the_line() -> None:
    text = "name: demo\nserve:\n  bind: 127.0.0.1\n  port: -5\n"
    with pytest.raises(InputError, match=r"deployctl.yaml:4: serve.port: "):
        spec.parse(text)


def test_unknown_key_is_named() -> None:
    with pytest.raises(InputError, match=r":3: limits.max_tokens: unknown key"):
        spec.parse("name: demo\nlimits:\n  max_tokens: 5\n")


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(InputError, match=r"deployctl.yaml:3: not valid YAML"):
        spec.parse("name: demo\nserve:\n\tport: 80\n")


def test_inline_api_key_is_refused() -> None:
    with pytest.raises(InputError, match="never written inline"):
        spec.parse("serve:\n  api_key: hunter2\n")


def test_cli_overrides_win_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    f = tmp_path / "deployctl.yaml"
    f.write_text("model:\n  path: models/m\nserve:\n  port: 9000\n")
    s = spec.load(f, {"serve.port": 9100})
    assert s.serve.port == 9100
    assert s.model.path == tmp_path / "models" / "m"
    assert s.stack_dir == tmp_path / "deployctl-stack"


def test_api_key_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert spec.parse("serve:\n  api_key_env: MY_KEY\n").resolve_api_key() == "s3cret"
    (tmp_path / "k").write_text("filekey\n")
    assert spec.parse(f"serve:\n  api_key_file: {tmp_path / 'k'}\n").resolve_api_key() == "filekey"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(InputError, match="MY_KEY is not set"):
        spec.parse("serve:\n  api_key_env: MY_KEY\n").resolve_api_key()


def test_starter_file_is_a_valid_spec() -> None:
    s = spec.parse(spec.starter("helpdesk"))
    assert s.name == "helpdesk"
