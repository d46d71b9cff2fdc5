"""`n2n-raw train`'s options are built from TrainConfig's fields (`config.option` → `cli.config_options`): one
source for names, types, defaults and help. These tests prove the built command matches the fields, and that
a field added to a config appears on its command with nothing else written."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from n2n_raw.cli import app, config_options
from n2n_raw.config import TrainConfig, option

RUN_CONTROLS = {"ctx", "out", "resume", "force"}  # the command's own: where the run goes, how to treat it


def _params(application, name=None) -> dict:
    cmd = typer.main.get_command(application)
    cmd = cmd.commands[name] if name else cmd
    return {p.name: p for p in cmd.params}


def test_train_options_are_exactly_the_config_fields_with_help():
    on_cli = {f.name for f in dataclasses.fields(TrainConfig) if "help" in f.metadata}
    assert set(_params(app, "train")) - RUN_CONTROLS == on_cli
    # Fields without help are set by other commands, benchmarks and tests, never by `train`.
    assert {f.name for f in dataclasses.fields(TrainConfig)} - on_cli == {"photos", "pictures",
                                                                          "default_data_size", "extra"}


def test_train_options_take_default_help_and_flag_from_the_field():
    params, defaults = _params(app, "train"), TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if "help" not in f.metadata:
            continue
        p, flag = params[f.name], f"--{f.name.replace('_', '-')}"
        assert p.help == f.metadata["help"]
        assert p.opts == [flag], p.opts
        want = f.metadata.get("cli_default", getattr(defaults, f.name))
        got = tuple(p.default or ()) if isinstance(want, tuple) else p.default
        assert got == want, f"{flag}: CLI default {got!r}, TrainConfig default {want!r}"
        assert p.is_flag == f.metadata["flag"], flag
    assert params["mode"].default is None  # asked for: required unless --resume takes the run's own


def test_fit_takes_trains_settings_from_the_same_fields():
    """fit's --seed, --precision and --device are train's (same default and help), not a second copy."""
    train, fit = _params(app, "train"), _params(app, "fit")
    for name in ("seed", "precision", "device"):
        assert (fit[name].default, fit[name].help) == (train[name].default, train[name].help), name


def test_a_new_field_appears_on_its_command_with_type_default_and_help(tmp_path):
    @dataclass(frozen=True)
    class Toy:
        size: int = option(3, "How big.")
        name: str | None = option(None, "A name.")
        folder: str | None = option(None, "A folder.", path=True)
        inputs: tuple[str, ...] = option((), "Inputs, repeatable.", path=True)
        loud: bool = option(False, "Shout.", flag=True)
        hidden: int = 5

    seen = {}
    toy = typer.Typer(add_completion=False)

    @toy.command()
    @config_options(Toy, before=[], after=[])
    def run(**options):
        seen.update(options)

    params = _params(toy)
    assert set(params) == {"size", "name", "folder", "inputs", "loud"}
    assert params["size"].help == "How big." and params["size"].default == 3
    runner = CliRunner()
    r = runner.invoke(toy, [])
    assert r.exit_code == 0, r.output
    assert seen == {"size": 3, "name": None, "folder": None, "inputs": [], "loud": False}
    r = runner.invoke(toy, ["--size", "7", "--name", "x", "--folder", str(tmp_path), "--inputs", "a",
                            "--inputs", "b", "--loud"])
    assert r.exit_code == 0, r.output
    assert seen == {"size": 7, "name": "x", "folder": tmp_path, "inputs": [Path("a"), Path("b")], "loud": True}
    r = runner.invoke(toy, ["--size", "big"])
    assert r.exit_code == 2 and "size" in r.output


@pytest.mark.parametrize("args,message", [
    (["--mode", "raw", "--data", "missing.h5"], "missing.h5: no such file or folder"),
    (["--mode", "srgb", "--val", "nowhere"], "nowhere: no such file or folder"),
    (["--mode", "raw", "--resume", "--force"], "--resume and --force: choose one"),
    ([], "--mode: required"),
])
def test_train_refuses_bad_options_in_one_line(tmp_path, args, message):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), *args])
    assert r.exit_code == 2
    assert message in r.output
    assert not (tmp_path / "run").exists()
