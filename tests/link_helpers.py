"""Make ``import helpers`` work anywhere in the project's virtual environment.

Writes a one-line ``.pth`` file into the environment's site-packages that adds
the repository root to ``sys.path``, so notebooks (whose working folder is
``notebooks/``) and tests import the one shared ``helpers.py``.
"""

import sysconfig
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def main() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    (site_packages / "lora_by_the_numbers.pth").write_text(f"{REPO_DIR}\n")


if __name__ == "__main__":
    main()
