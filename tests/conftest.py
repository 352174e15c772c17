"""Shared test setup: the suite runs offline, like a learner after `make lab`."""

import contextlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Nothing in the tests may reach the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def no_network(monkeypatch):
    """Cut the network for one test: any attempt to open a connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def copy_course(destination: Path) -> Path:
    """Copy what the notebooks need (notebooks/, assets/, plumbing/, helpers.py, sharded_step.py) into a new folder ``destination``."""
    shutil.copytree(REPO / "notebooks", destination / "notebooks")
    shutil.copytree(REPO / "assets", destination / "assets")
    shutil.copytree(REPO / "plumbing", destination / "plumbing", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "helpers.py", destination / "helpers.py")
    shutil.copy2(REPO / "sharded_step.py", destination / "sharded_step.py")
    return destination


@contextlib.contextmanager
def system_chromium():
    """Headless Debian Chromium driven by Playwright (not a Playwright download), closed afterwards.

    Fails, rather than skips, with the handouts' message on how to install it. Used by the slide
    and JupyterLab browser tests.
    """
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO / "tools"))
    import make_handouts  # the same lookup, flags and message as the handouts

    try:
        executable = make_handouts.find_chromium()
    except RuntimeError as missing:
        pytest.fail(str(missing))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=[*make_handouts.CHROMIUM_QUIET_FLAGS, "--no-proxy-server"])
        try:
            yield chromium
        finally:
            chromium.close()


TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
              "num_attention_heads": 16, "num_key_value_heads": 4, "intermediate_size": 96}
"""The one tiny config the tests build from (16 heads of 4 dimensions, 4 key/value heads: k and v are narrower than q)."""


def write_config_json(folder: Path, settings: dict) -> Path:
    """``settings`` written as ``folder/config.json`` (the folder created); returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(settings))
    return path
