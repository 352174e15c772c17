"""tools/check_environment.py: a damaged .venv is found and repaired by `make setup`, not met as a raw ModuleNotFoundError."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import check_environment  # noqa: E402


def test_the_environment_under_test_is_whole():
    assert check_environment.broken() == []


def test_a_removed_package_is_found_and_reinstalled_at_its_pin(monkeypatch, capsys):
    pandas_pin = check_environment.pins()["pandas"]
    real_version = importlib.metadata.version
    removed = {"pandas"}

    def version(name):
        if name in removed:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    commands = []

    def pip(command, **kwargs):
        commands.append(command)
        removed.clear()  # the reinstall worked
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "run", pip)
    assert check_environment.broken() == [f"pandas=={pandas_pin}"]
    assert check_environment.main(["--repair"]) == 0
    assert commands and commands[0][-1] == f"pandas=={pandas_pin}" and "--force-reinstall" in commands[0]
    assert "damaged: pandas" in capsys.readouterr().err


def test_a_repair_that_fails_says_how_to_start_again(monkeypatch, capsys):
    monkeypatch.setattr(check_environment, "broken", lambda: ["pandas==0.0"])
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, 1))
    assert check_environment.main(["--repair"]) == 1
    assert "rm -rf .venv && make setup" in capsys.readouterr().err
