"""Write the course's shared pieces into every notebook and the README, from one source each.

- the repository URL (in ``assets/course.json``) -> the "Open in Colab" badges and the Colab setup cell;
- what each notebook teaches (also in ``assets/course.json``) and the last ``make bench`` times -> the README's table;
- the slide rule below -> each cell's ``slideshow`` metadata, which ``make slides`` follows.

Run it after changing any of those (``make course``); a test fails while a notebook is out of date.

Usage: python tools/stamp_course.py
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COURSE_FILE = ROOT / "assets" / "course.json"
NOTEBOOK_DIR = ROOT / "notebooks"
README = ROOT / "README.md"

COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"  # the README's badge (GitHub shows it online)
BADGE_FILE = ROOT / "assets" / "open_in_colab.svg"  # the notebooks' badge: our own image, stored inside the notebook
BADGE_ATTACHMENT = "open_in_colab.svg"
COLAB_CELL_MARK = "# Google Colab only:"
README_TABLE_START = "<!-- notebooks-table: written by tools/stamp_course.py -->"
README_TABLE_END = "<!-- end of notebooks-table -->"


def course_settings() -> dict:
    """The repository URL and branch, from ``assets/course.json`` (both end up in a shell command and in links)."""
    settings = json.loads(COURSE_FILE.read_text())
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", settings.get("repository", "")):
        raise ValueError(f"{COURSE_FILE.name}: 'repository' must look like https://github.com/owner/name")
    if not re.fullmatch(r"[\w./-]+", settings.get("branch", "")):
        raise ValueError(f"{COURSE_FILE.name}: 'branch' must be a plain branch name such as main")
    return settings


def series_notebooks() -> list[Path]:
    """The numbered notebooks of the series, in order (the student copies are not among them)."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def colab_url(notebook_name: str, settings: dict) -> str:
    """Colab's address for a notebook of the repository on GitHub."""
    github_path = settings["repository"].removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github_path}/blob/{settings['branch']}/notebooks/{notebook_name}"


def colab_badge(notebook_name: str, settings: dict, image: str = COLAB_BADGE_IMAGE) -> str:
    return f"[![Open in Colab]({image})]({colab_url(notebook_name, settings)})"


def badge_attachment() -> dict:
    """The badge image as a cell attachment: it shows offline, in JupyterLab, Colab, GitHub, slides and handouts."""
    return {BADGE_ATTACHMENT: {"image/svg+xml": base64.b64encode(BADGE_FILE.read_bytes()).decode("ascii")}}


CLONE = "lora-by-the-numbers"  # the Colab cell's clone of the course, in Colab's working folder (/content)


def colab_cell_source(settings: dict, number: str = "") -> str:
    """The first code cell of every notebook: sets the course up in Colab (helpers.prepare_colab, with the packages
    only notebook ``number`` needs: ``colab_extras`` in course.json), does nothing elsewhere."""
    extras = ", ".join(repr(package) for package in settings.get("colab_extras", {}).get(number, []))
    return f'''{COLAB_CELL_MARK} fetch the course, install what Colab lacks (about 20 s). Elsewhere it does nothing.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.exists("../helpers.py"):  # opened from GitHub: work in a clone of the course (made once)
        subprocess.run("test -d {CLONE} || git clone --quiet --depth=1 --branch={settings["branch"]} {settings["repository"]} {CLONE}", shell=True, check=True)
        os.chdir("{CLONE}/notebooks")
    sys.path.insert(0, os.path.abspath(".."))
    import helpers; helpers.prepare_colab({extras})'''


def slide_type(cell) -> str:
    """Where a cell sits in the slide deck: a new slide, a sub-slide, skipped, or on the current slide."""
    if cell.cell_type == "code" and cell.source.startswith(COLAB_CELL_MARK):
        return "skip"
    if cell.cell_type == "markdown":
        if cell.source.startswith(("# ", "## ")):
            return "slide"
        if cell.source.startswith(("### ", "**Exercise")):
            return "subslide"
    return "-"


def with_badge(title_source: str, badge: str) -> str:
    """The title cell with the Colab badge as its second line (replacing an older badge)."""
    lines = title_source.split("\n")
    if len(lines) > 1 and lines[1].startswith("[![Open in Colab]"):
        del lines[1]
    lines.insert(1, badge)
    return "\n".join(lines)


def plumbing_cells(notebook) -> list:
    """Cells that run the course but teach nothing: the setup cell (imports, first after the Colab cell),
    and the make-run settings (the "**Settings.**" note and papermill's ``parameters`` cell after it)."""
    cells = notebook.cells
    found = [cells[2]] if len(cells) > 2 and cells[2].cell_type == "code" and "import helpers" in cells[2].source else []
    for before, cell in zip(cells, cells[1:]):
        if "parameters" in cell.metadata.get("tags", []) and before.source.startswith("**Settings.**"):
            found += [before, cell]
    return found


def stamp_notebook(notebook, name: str, settings: dict):
    """Badge in the title cell, the Colab cell first among the code cells, slide tags everywhere."""
    title = notebook.cells[0]
    title.source = with_badge(title.source, colab_badge(name, settings, image=f"attachment:{BADGE_ATTACHMENT}"))
    title["attachments"] = badge_attachment()
    colab_source = colab_cell_source(settings, name[:2])
    second = notebook.cells[1]
    if second.cell_type == "code" and second.source.startswith(COLAB_CELL_MARK):
        second.source = colab_source
    else:
        notebook.cells.insert(1, nbformat.v4.new_code_cell(colab_source))
    notebook.cells[1].metadata["tags"] = ["colab-setup"]  # handouts leave it out
    for cell in plumbing_cells(notebook):  # slides and handouts show no input for these (their outputs stay)
        cell.metadata["tags"] = sorted(set(cell.metadata.get("tags", [])) | {"plumbing"})
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"
        cell.metadata["slideshow"] = {"slide_type": slide_type(cell)}
    return notebook


def notebook_title(notebook) -> str:
    """"Per-module counts" from "# 02 · Per-module counts: every linear layer"."""
    first_line = notebook.cells[0].source.split("\n")[0]
    return first_line.split(" · ", 1)[1].split(":")[0].strip()


def readme_table(settings: dict, run_times: dict[str, float]) -> str:
    """The README's table of notebooks: title, what it teaches, measured run time, Colab badges."""
    lines = [
        README_TABLE_START,
        "| # | notebook | what you learn | run time | Colab | student copy |",
        "|---|---|---|---|---|---|",
    ]
    for path in series_notebooks():
        notebook = nbformat.read(path, as_version=4)
        seconds = run_times.get(path.name)
        shown = f"{seconds:.0f} s" if seconds is not None else "not measured"
        badge = colab_badge(path.name, settings)
        number = path.name[:2]
        what = settings["what_you_learn"][number]
        student_copy = f"[exercises](notebooks/exercises/{path.name}) {colab_badge('exercises/' + path.name, settings)}"
        lines.append(f"| {number} | [{notebook_title(notebook)}](notebooks/{path.name}) | {what} | {shown} | {badge} | {student_copy} |")
    lines.append(README_TABLE_END)
    return "\n".join(lines)


def stamp_readme(text: str, table: str) -> str:
    pattern = re.compile(re.escape(README_TABLE_START) + ".*?" + re.escape(README_TABLE_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README.md lacks the markers {README_TABLE_START!r} ... {README_TABLE_END!r}.")
    return pattern.sub(lambda _match: table, text)


def read_run_times() -> dict[str, float]:
    """Seconds per notebook from the last `make bench` (assets/run_times.json), if there is one."""
    path = ROOT / "assets" / "run_times.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else {}


def main() -> None:
    settings = course_settings()
    for path in series_notebooks():
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        stamp_notebook(notebook, path.name, settings)
        if nbformat.writes(notebook) != before:
            nbformat.write(notebook, path)
            print(f"stamped {path.relative_to(ROOT)}")
    text = README.read_text()
    stamped = stamp_readme(text, readme_table(settings, read_run_times()))
    if stamped != text:
        README.write_text(stamped)
        print("stamped README.md")


if __name__ == "__main__":
    main()
