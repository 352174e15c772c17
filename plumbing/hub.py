"""The Hugging Face Hub, opt-in: a token from ``.env`` (never printed), and a quick check that the Hub answers."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
from pathlib import Path

from plumbing.model_cache import DEFAULT_MODEL, REPO_DIR

HUB_HOST = "huggingface.co"
ENCODINGS = {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16", b"\xef\xbb\xbf": "utf-8-sig"}
"""Byte-order marks an editor may write (Windows Notepad saves UTF-16 with one)."""


def read_dotenv(path: Path | None = None) -> None:
    """Put the settings of ``.env`` (the repository's, by default) into the environment (existing variables
    win), whatever its text encoding."""
    from dotenv import load_dotenv

    path = path or REPO_DIR / ".env"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as error:
        raise ValueError(f"{path.name} cannot be read ({error.strerror}). Fix its permissions, or remove it.") from None
    encoding = next((name for mark, name in ENCODINGS.items() if raw.startswith(mark)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not a text file in UTF-8 or UTF-16. Save it again as plain text "
                         "(one line such as HF_TOKEN=hf_...).") from None
    load_dotenv(stream=io.StringIO(text))


def hf_token() -> str | None:
    """A Hugging Face token, never printed: ``HF_TOKEN`` from the environment or the repository's ``.env``,
    else what ``huggingface_hub.get_token()`` finds (it reads HF_TOKEN too, a Colab secret, `hf auth login`)."""
    from huggingface_hub import get_token

    read_dotenv()
    return get_token() or None


def hub_is_reachable(timeout: float = 2.0) -> bool:
    """True when the Hugging Face Hub answers within ``timeout`` seconds and offline mode is not switched on.

    The name lookup runs in a helper thread: a resolver that swallows queries would otherwise block
    for its own timeout (11.7 s measured), whatever ``timeout`` says.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    answered = []

    def connect() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                answered.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answered)


@contextlib.contextmanager
def load_errors_explained(model_id: str, source: str):
    """Turn a failed read into one message: a damaged offline cache, or a hub id that cannot be loaded."""
    try:
        yield
    except Exception as error:  # a damaged file can fail in the JSON, safetensors or tokenizers library
        if model_id == DEFAULT_MODEL:
            raise ValueError(
                f"The offline model in {source} could not be read ({type(error).__name__}): it is damaged. "
                "Repair it with `make setup` (or `python helpers.py`), which converts it again."
            ) from None
        if not isinstance(error, OSError):
            raise
        raise ValueError(
            f"Could not load {model_id!r} ({type(error).__name__}). Check the id; for gated models, "
            "accept the licence on the model's Hub page and put HF_TOKEN in .env."
        ) from None
