"""The notebooks execute top to bottom (their cells assert the hand-checked equations), and the copies
committed with their outputs are complete and not stale (`python notebooks/execute.py` makes them)."""
import hashlib
import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

FOLDER = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(FOLDER) if f.endswith(".ipynb"))


def test_there_are_notebooks():
    assert {"00_one_step_by_hand.ipynb", "01_core_equations.ipynb", "02_style_transfer.ipynb",
            "03_inpainting.ipynb", "04_photo_translation.ipynb", "05_digit_transform.ipynb",
            "06_video_style_transfer.ipynb", "07_registration.ipynb",
            "08_adaptive_stopping.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_are_complete_and_made_by_the_cells_as_they_are(name):
    """Executed in one kernel from the first cell to the last, no errors, figures and tables present, each
    output made by the code cell as it is now (execute.py records a hash of every cell's source), light.
    It does not see changes to the project files a notebook imports: test_notebook_executes runs them."""
    path = os.path.join(FOLDER, name)
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{name}: not executed top to bottom in one kernel: run python notebooks/execute.py {name[:-6]}"
    recorded = notebook.metadata.get("rl_i2it", {}).get("sources")
    current = [hashlib.sha256(c.source.encode()).hexdigest()[:16] for c in code]
    stale = [i for i, (a, b) in enumerate(zip(current, recorded or [])) if a != b]
    assert recorded is not None and len(recorded) == len(current) and not stale, \
        f"{name}: code cells {stale} changed after the outputs were made: run python notebooks/execute.py {name[:-6]}"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum(1 for c in code if c.get("outputs")) >= len(code) // 2, f"{name}: most cells show nothing"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name}: no figure"
    assert os.path.getsize(path) < 1_500_000, f"{name}: {os.path.getsize(path)} bytes"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name):
    notebook = nbformat.read(os.path.join(FOLDER, name), as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": FOLDER}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
