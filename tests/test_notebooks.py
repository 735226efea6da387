"""The notebooks execute top to bottom (their cells assert the hand-checked equations)."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))


def test_there_are_notebooks():
    assert {"01_core_equations.ipynb", "02_style_transfer.ipynb", "03_inpainting.ipynb",
            "04_photo_translation.ipynb", "05_digit_transform.ipynb",
            "06_video_style_transfer.ipynb", "07_registration.ipynb",
            "08_adaptive_stopping.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name):
    folder = os.path.join(ROOT, "notebooks")
    notebook = nbformat.read(os.path.join(folder, name), as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
