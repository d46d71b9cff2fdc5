"""`n2n-raw train`'s options and TrainConfig's fields are written in two places (the CLI and config.py):
this test fails the moment their names or defaults drift apart."""
from __future__ import annotations

import dataclasses

import typer.main

from n2n_raw.cli import app
from n2n_raw.config import TrainConfig

# Fields a user does not set on `train`: set by other commands (fit's photos) or by benchmarks and tests.
NOT_ON_THE_CLI = {"photos", "pictures", "default_data_size", "extra"}


def _train_params() -> dict:
    cmd = typer.main.get_command(app).commands["train"]
    return {p.name: p for p in cmd.params}


def test_every_config_field_is_a_train_option_with_the_same_default():
    params, defaults = _train_params(), TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in NOT_ON_THE_CLI:
            continue
        assert f.name in params, f"TrainConfig.{f.name} has no `train --{f.name.replace('_', '-')}` option"
        cli_default, cfg_default = params[f.name].default, getattr(defaults, f.name)
        if isinstance(cfg_default, tuple):
            cli_default = tuple(cli_default or ())
        if f.name == "mode":  # the CLI asks for it (None: required unless --resume); the config's is a placeholder
            assert cli_default is None
            continue
        assert cli_default == cfg_default, f"--{f.name.replace('_', '-')}: CLI default {cli_default!r}, " \
                                           f"TrainConfig default {cfg_default!r}"


def test_every_train_option_is_a_config_field_or_a_run_control():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run_controls = {"out", "resume", "force"}  # where the run goes and how to treat an existing one
    extra = set(_train_params()) - fields - run_controls
    assert not extra, f"train options that TrainConfig does not know: {sorted(extra)}"
