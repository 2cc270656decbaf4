"""The `sourcematters` command: dispatch, and a --help that explains every flag of every command."""

import argparse
import importlib
import shutil
import subprocess
import sys

import pytest

from sourcematters_jax import cli

# command -> module whose build_parser() the command runs (or "module:parser function")
ARGPARSE_COMMANDS = {"demo": "sourcematters_jax.demo", "sweep": "sourcematters_jax.launch.sweep",
                     "convert": "sourcematters_jax.convert_weights.cli", "pretrain": "sourcematters_jax.pretrain.cli",
                     "export": "sourcematters_jax.convert_weights.export_cli", "report": "sourcematters_jax.results.report",
                     "evaluate": "sourcematters_jax.reuse.cli:evaluate_parser",
                     "saliency": "sourcematters_jax.reuse.cli:saliency_parser",
                     "features": "sourcematters_jax.reuse.cli:features_parser",
                     "prepare-lidc": "sourcematters_jax.data.prepare_lidc"}


def command_parser(command: str) -> argparse.ArgumentParser:
    module, _, function = ARGPARSE_COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), function or "build_parser")()


def test_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "train", "sweep", "convert", "export", "pretrain", "report", "evaluate", "saliency",
                 "features", "prepare-lidc"):
        assert f"  {name} " in out
    assert cli.main([]) == 2
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(ARGPARSE_COMMANDS))
def test_every_flag_has_help(command, capsys):
    parser = command_parser(command)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) > 10, f"{command} {action.option_strings} has no help"
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for action in parser._actions:
        for option in action.option_strings:
            assert option in out


def test_train_help_explains_its_flags(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--config:", "--workdir:", "--config.KEY=VALUE", "--[no]distributed:",
                 "--coordinator_address:", "--num_processes:", "--process_id:"):
        assert flag in out
    assert "python -m sourcematters_jax.main" in out


def test_console_script_is_installed():
    exe = shutil.which("sourcematters") or pytest.fail("the sourcematters console script is not installed")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "sweep" in result.stdout
    result = subprocess.run([sys.executable, "-m", "sourcematters_jax.launch", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "--members_per_program" in result.stdout
