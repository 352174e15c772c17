"""A learner's view: notebook 01 runs in a real JupyterLab, in a real browser.

nbval (run by `make test`) proves that every committed output equals a fresh
run in a kernel, but it never opens JupyterLab. This test does what a learner
does after `make lab`: it starts JupyterLab, opens notebook 01 in Chromium,
clicks Run → Run All Cells in the menu bar, waits for every cell to finish,
and reads the rendered page. It proves that

* the notebook runs to the end inside JupyterLab, with no error on screen;
* the model's chat answer is shown (the same text as the committed output);
* SmolLM2's total parameter count is shown (the same number as an independent
  count of a weightless skeleton).

Nothing touches the repository: JupyterLab works on a copy of the course in
pytest's temp folder, with its own config, runtime, settings and workspace
folders, and the kernel imports the copied helpers.py. The copied notebook is
opened with its outputs cleared, so every output the test reads comes from
this run. A screenshot of the executed notebook is saved to
build/screenshots/jupyterlab_01.png.

Cells are found by their content, never by their position.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

import helpers

from conftest import copy_course, system_chromium  # noqa: E402

REPO_DIR = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_architecture.ipynb"
CHAT_CELL_SNIPPET = "helpers.chat("
SCREENSHOT = REPO_DIR / "build" / "screenshots" / "jupyterlab_01.png"

VIEWPORT = {"width": 1280, "height": 1600}  # tall enough for the answer and the count in one screenshot

# Bounded waits, in seconds. On a busy 2-core machine the whole test takes 45-75 s,
# of which running the notebook takes about 20 s.
SERVER_START_TIMEOUT = 30
PAGE_LOAD_TIMEOUT = 30
KERNEL_READY_TIMEOUT = 30
RUN_ALL_TIMEOUT = 60
SERVER_STOP_TIMEOUT = 10

# JupyterLab user settings, written as files into the isolated settings folder.
LAB_SETTINGS = {
    # Keep every cell in the DOM (by default JupyterLab may skip off-screen cells).
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No news feed, no update check, no "would you like to receive news?" toast.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

# CSS selectors of the parts of the page the test reads.
CODE_PROMPTS = ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt"  # "[ ]:", "[*]:", "[7]:"
OUTPUTS = ".jp-Notebook .jp-OutputArea-output"
STDERR_OUTPUTS = '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
KERNEL_INDICATOR = ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator"  # data-status="idle"
KERNEL_NAME = ".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName"  # "Python 3 (ipykernel)"

# True once the notebook has a kernel and it is idle. The execution indicator
# alone says "idle" before any kernel exists, and Run All Cells clicked then
# opens a "Select Kernel" dialog instead of running anything.
KERNEL_READY_JS = """
([indicator, kernelName]) => {
    const name = document.querySelector(kernelName)?.textContent.trim();
    const idle = document.querySelector(indicator)?.dataset.status === "idle";
    return idle && !!name && name !== "No Kernel";
}
"""

# True once no cell is queued or running ("[*]:") and the kernel is idle, and
# either every code cell shows an execution count ("[7]:") or an error output
# stopped the run (JupyterLab then leaves the cells after it unexecuted).
RUN_FINISHED_JS = """
([prompts, stderr, indicator]) => {
    const texts = [...document.querySelectorAll(prompts)].map(p => p.textContent.trim());
    const idle = document.querySelector(indicator)?.dataset.status === "idle";
    if (texts.length === 0 || !idle || texts.some(t => t.includes("*"))) return false;
    const allNumbered = texts.every(t => /^\\[\\d+\\]:$/.test(t));
    const errorShown = [...document.querySelectorAll(stderr)].some(o => /Traceback|Error/.test(o.textContent));
    return allNumbered || errorShown;
}
"""


# ---------------------------------------------------------------------------
# Expected values, from sources independent of the browser
# ---------------------------------------------------------------------------


def cell_with_source(nb: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    """The one code cell whose source contains ``snippet``."""
    matches = [c for c in nb.cells if c.cell_type == "code" and snippet in c.source]
    assert len(matches) == 1, f"expected one code cell containing {snippet!r}, found {len(matches)}"
    return matches[0]


def committed_chat_answer() -> str:
    """Start of the model's answer, from the saved output of the ``helpers.chat`` cell.

    The cell prints the question, then the answer, so the answer is the last
    line. nbval proves the saved text equals a fresh run (decoding is greedy).
    """
    nb = nbformat.read(REPO_DIR / "notebooks" / NOTEBOOK, as_version=4)
    cell = cell_with_source(nb, CHAT_CELL_SNIPPET)
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines, f"the {CHAT_CELL_SNIPPET} cell of {NOTEBOOK} has no saved output"
    return lines[-1][:40]


def expected_parameter_count() -> str:
    """SmolLM2's parameter count from a weightless skeleton, with commas as the notebook prints it."""
    skeleton = helpers.build_skeleton(helpers.DEFAULT_MODEL)
    return f"{sum(p.numel() for p in skeleton.parameters()):,}"


# ---------------------------------------------------------------------------
# An isolated copy of the course, and JupyterLab serving it
# ---------------------------------------------------------------------------


@dataclass
class LabServer:
    """A running JupyterLab: where it listens, the token that opens it, its log."""

    base_url: str
    token: str = field(repr=False)  # pytest prints fixture values when a test fails
    log_file: Path


def clear_outputs(notebook_path: Path) -> None:
    """Remove every output and execution count, so later outputs can only come from this run."""
    nb = nbformat.read(notebook_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(nb, notebook_path)


def write_lab_settings(settings_dir: Path) -> None:
    """Write LAB_SETTINGS as JupyterLab user-settings files."""
    for relative_path, values in LAB_SETTINGS.items():
        path = settings_dir / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def lab_environment(course_dir: Path, jupyter_home: Path, token: str) -> dict[str, str]:
    """Environment for JupyterLab and its kernel: own Jupyter folders, offline, no HF token."""
    env = dict(os.environ)
    env.pop("HF_TOKEN", None)
    env["HF_HUB_OFFLINE"] = "1"
    env["JUPYTER_TOKEN"] = token  # in the environment, not on the command line
    # The kernel imports the copied helpers.py (which finds no .env beside it).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(course_dir), env.get("PYTHONPATH")]))
    for variable, folder in {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
    }.items():
        (jupyter_home / folder).mkdir(parents=True, exist_ok=True)
        env[variable] = str(jupyter_home / folder)
    write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_command(course_dir: Path, port: int) -> list[str]:
    """The `jupyter lab` command line: local only, no browser, no update check."""
    command = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",  # fail rather than quietly take another port
        f"--ServerApp.root_dir={course_dir}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.getuid() == 0:
        command.append("--allow-root")
    return command


def redact(text: str, token: str) -> str:
    """``text`` with the token hidden, safe to show in a failure message."""
    return text.replace(token, "<token>")


def wait_until_serving(process: subprocess.Popen, server: LabServer, timeout: float) -> None:
    """Poll JupyterLab's /api/status until it answers; fail if it exits or ``timeout`` passes."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1
    request = urllib.request.Request(
        f"{server.base_url}/api/status", headers={"Authorization": f"token {server.token}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = redact(server.log_file.read_text(errors="replace"), server.token)
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log[-3000:]}")
        try:
            with opener.open(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet
        time.sleep(0.2)  # the polling interval of this wait-for loop
    pytest.fail(f"JupyterLab did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    """Stop JupyterLab: SIGTERM (it then shuts its kernel down), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[LabServer]:
    """JupyterLab serving a copy of the course (notebook 01 without outputs); stopped afterwards."""
    course_dir = copy_course(tmp_path / "course")
    clear_outputs(course_dir / "notebooks" / NOTEBOOK)
    token = secrets.token_hex(24)
    port = free_port()
    server = LabServer(f"http://127.0.0.1:{port}", token, tmp_path / "jupyterlab.log")
    with server.log_file.open("wb") as log:
        process = subprocess.Popen(
            lab_command(course_dir, port),
            env=lab_environment(course_dir, tmp_path / "jupyter", token),
            cwd=course_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(process, server, SERVER_START_TIMEOUT)
        yield server
    finally:
        stop(process)


# ---------------------------------------------------------------------------
# The browser, driven as a learner would
# ---------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Browser]:
    with system_chromium() as chromium:
        yield chromium


def wait_until(page: Page, condition_js: str, arg: list[str], timeout: float, what: str) -> None:
    """Wait until ``condition_js`` is true on the page; else save a screenshot and fail naming ``what``."""
    try:
        page.wait_for_function(condition_js, arg=arg, timeout=timeout * 1000)
        return
    except PlaywrightTimeoutError:
        pass  # fail below, outside the except block, without Playwright's traceback
    save_screenshot(page)
    pytest.fail(f"{what} did not happen within {timeout} s; see {SCREENSHOT.relative_to(REPO_DIR)}")


def open_notebook(browser: Browser, server: LabServer, name: str) -> Page:
    """Open ``notebooks/name`` in JupyterLab and wait until its kernel is idle."""
    page = browser.new_page(viewport=VIEWPORT)
    problem = None
    try:
        page.goto(f"{server.base_url}/lab/tree/notebooks/{name}?token={server.token}", timeout=PAGE_LOAD_TIMEOUT * 1000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=PAGE_LOAD_TIMEOUT * 1000)
    except PlaywrightError as error:  # its message may contain the URL, hence the token
        problem = redact(str(error), server.token)
    if problem:  # failing here, outside the except block, keeps the unredacted error out of the report
        pytest.fail(f"JupyterLab did not show {name}: {problem}")
    wait_until(page, KERNEL_READY_JS, [KERNEL_INDICATOR, KERNEL_NAME], KERNEL_READY_TIMEOUT, "the kernel start")
    return page


def run_all_cells(page: Page) -> None:
    """Click Run → Run All Cells in the menu bar."""
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu:visible .lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


def wait_for_run_to_finish(page: Page) -> None:
    """Wait until no cell is queued or running and the kernel is idle (see RUN_FINISHED_JS)."""
    arg = [CODE_PROMPTS, STDERR_OUTPUTS, KERNEL_INDICATOR]
    wait_until(page, RUN_FINISHED_JS, arg, RUN_ALL_TIMEOUT, "the end of the run")


def save_screenshot(page: Page) -> None:
    """Scroll the chat cell to the top of the notebook and save a screenshot to build/.

    JupyterLab scrolls inside the notebook panel, not the page, so the
    "full page" is the viewport; VIEWPORT is tall enough to show the chat
    answer and the parameter count below it.
    """
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover highlight left where the last click was
    chat_cell = page.locator(".jp-CodeCell", has_text=CHAT_CELL_SNIPPET)
    if chat_cell.count() == 1:
        chat_cell.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    page.screenshot(path=SCREENSHOT, full_page=True)


def rendered_outputs(page: Page) -> str:
    """Text of every cell output on the page."""
    return "\n".join(page.locator(OUTPUTS).all_inner_texts())


def errors_on_page(page: Page) -> list[str]:
    """Error outputs (tracebacks, "...Error: ...") shown on the page."""
    return [text for text in page.locator(STDERR_OUTPUTS).all_inner_texts() if re.search(r"Traceback|Error", text)]


# ---------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------


def test_notebook_01_runs_in_jupyterlab_and_shows_its_results(browser: Browser, jupyterlab: LabServer) -> None:
    expected_answer = committed_chat_answer()
    expected_count = expected_parameter_count()
    SCREENSHOT.unlink(missing_ok=True)  # a failed run must not leave an older screenshot behind

    page = open_notebook(browser, jupyterlab, NOTEBOOK)
    assert rendered_outputs(page).strip() == "", "the copied notebook should open with no outputs"

    run_all_cells(page)
    wait_for_run_to_finish(page)
    save_screenshot(page)

    errors = errors_on_page(page)
    assert not errors, f"{NOTEBOOK} shows an error in JupyterLab:\n" + "\n\n".join(errors)
    shown = rendered_outputs(page)
    assert expected_answer in shown, f"the chat answer {expected_answer!r} is not on the page"
    assert expected_count in shown, f"the parameter count {expected_count} is not on the page"
