from __future__ import annotations

import re
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


# -- hostile specs (issue #16): strict types, safe names, bounded YAML, every problem at once -------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("serve:\n  port: true\n", "deployctl.yaml:2: serve.port: Input should be a valid integer, got true"),
        ("serve:\n  port: '8080'\n", "serve.port: Input should be a valid integer, got '8080'"),
        ("image: ''\n", "image: the image cannot be empty"),
        ("image: 'Not An Image!'\n", "is not a Docker image reference"),
        ("model:\n  served_name: ../../etc\n", "model.served_name: '../../etc' is not a safe name"),
        ("model:\n  served_name: tiny$HOME\n", "model.served_name: 'tiny$HOME' is not a safe name"),
        ("model:\n  served_name: tiny\U0001f600\n", "is not a safe name"),
        (f"name: {'a' * 300}\n", "name: 'aaaa"),
        ("name: ../x\n", "name: '../x' is not a safe name"),
        # `$` in a Python regex also matches before a final newline: found by test_hostile_fuzz.
        ('model:\n  served_name: "tiny\\n"\n', "model.served_name: 'tiny\\n' is not a safe name"),
        ('image: "repo:tag\\n"\n', "is not a Docker image reference"),
        ('serve:\n  api_key_env: "KEY\\n"\n', "is not an environment variable name"),
        ('gpus: ["GPU-12ab\\n"]\n', "is neither a GPU index nor a UUID"),
        ("gpus: [true]\n", "gpus: true is neither a GPU index nor a UUID"),
        ("gpus: 1.5\n", "gpus: expected a count (2) or a list"),
        ("limits:\n  max_total_tokens: 1e400\n", "limits.max_total_tokens: Input should be a valid integer"),
        (f"limits:\n  max_total_tokens: {10**40}\n", "limits.max_total_tokens: Input should be less than or equal"),
        (f"stack_dir: {'d' * 300}\n", "longer than 255 bytes"),
        ('stack_dir: "a\\0b"\n', "stack_dir: a path cannot hold a NUL byte"),
        ('model:\n  path: "m\\0"\n', "model.path: a path cannot hold a NUL byte"),
        ("name: a\nname: b\n", "deployctl.yaml:2: name: duplicate key (first given on line 1)"),
        ("model:\n  served_name: a\n  served_name: b\n", ":3: model.served_name: duplicate key"),
        ("serve:\n  prot: 80\n", "serve.prot: unknown key (did you mean serve.port?)"),
        ("modle:\n  path: m\n", "modle: unknown key (did you mean model?)"),
        ("zzz: 1\n", "zzz: unknown key (known: name, engine, image"),
    ],
)
def test_hostile_values_are_refused_naming_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        spec.parse(text)
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_every_problem_is_listed_at_once_in_file_order() -> None:
    text = "name: demo\nmodle: {}\nserve:\n  port: true\n  port: 7\nimage: ''\n"
    with pytest.raises(InputError) as caught:
        spec.parse(text)
    message = caught.value.message
    assert message.startswith("4 problems: deployctl.yaml:2: modle: unknown key")
    positions = [message.index(f"deployctl.yaml:{n}:") for n in (2, 4, 5, 6)]
    assert positions == sorted(positions)


def test_an_error_from_a_flag_names_the_flag() -> None:
    with pytest.raises(InputError) as caught:
        spec.load(None, {"serve.port": 70000, "gpus": [0, 0]}, flags={"serve.port": "--port", "gpus": "--gpus"})
    message = caught.value.message
    assert "--port 70000: Input should be less than or equal to 65535" in message
    assert "--gpus [0, 0]: gpus names a GPU twice" in message
    assert "embedded defaults" not in message


def test_a_file_value_checked_against_a_flag_names_both(tmp_path: Path) -> None:
    f = tmp_path / "deployctl.yaml"
    f.write_text("limits:\n  max_total_tokens: 100\n")
    with pytest.raises(InputError, match=r"deployctl.yaml:1: limits: .* \(with --max-input-tokens 9000\)"):
        spec.load(f, {"limits.max_input_tokens": 9000}, flags={"limits.max_input_tokens": "--max-input-tokens"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # billion laughs: nine levels of nine aliases
            "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)),
            "refused: more than 32 aliases",
        ),
        (  # few aliases, many values: 40 x 10 x 10 x 2 after expansion
            f"a: &a [{', '.join(['x'] * 40)}]\nb: &b [{', '.join(['*a'] * 10)}]\n"
            f"c: &c [{', '.join(['*b'] * 10)}]\nd: [*c, *c]\n",
            "refused: more than 10000 values (aliases expanded)",
        ),
        ("a: " + "[" * 10_000 + "]" * 10_000 + "\n", "deployctl.yaml:1: refused: nested deeper than 20 levels"),
        ("name: '" + "x" * (64 * 1024) + "'\n", "larger than 64 KiB"),
        ("\n".join(f"k{i}: [1, 2]" for i in range(4000)), "refused: more than 10000 values"),
        ("? [a, b]\n: 1\n", "a key must be a plain word"),
        ("name: !!python/object:os.system x\n", "not valid YAML"),
    ],
)
def test_bounded_yaml_refuses_bombs_and_deep_nesting(text: str, expected: str) -> None:
    with pytest.raises(InputError, match=re.escape(expected)):
        spec.parse(text)


def test_a_50mb_spec_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    f = tmp_path / "deployctl.yaml"
    with f.open("wb") as out:
        out.write(b"name: '")
        out.truncate(50 * 1024 * 1024)
    with pytest.raises(InputError, match="larger than 64 KiB"):
        spec.load(f)


def test_a_spec_that_is_not_a_regular_file_or_not_utf8_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        spec.load(tmp_path)
    f = tmp_path / "deployctl.yaml"
    f.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        spec.load(f)


def test_engine_vllm_is_a_known_engine() -> None:
    assert spec.parse("engine: vllm\n").engine == "vllm"
