"""Run every notebook top to bottom and save it with its outputs, so that GitHub shows the figures.

    python notebooks/execute.py                      # all notebooks (about 5 minutes on 2 CPU cores)
    python notebooks/execute.py 02_style_transfer    # one or more, by name

Each notebook runs in a fresh kernel from the notebooks/ folder. Its PNG figures are re-encoded
with at most 256 colours (0.4 to 0.6 of matplotlib's size on a line plot and a photo grid, with
little visible change); the metadata `rl_i2it.sources` records a hash of every code cell as it was
run, so that tests/test_notebooks.py can tell a notebook whose code was edited after its outputs
were made.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from PIL import Image

FOLDER = os.path.dirname(os.path.abspath(__file__))


def source_hash(cell) -> str:
    return hashlib.sha256(cell.source.encode()).hexdigest()[:16]


def compress_png(data: str) -> str:
    """A base64 PNG re-encoded with an adaptive 256-colour palette."""
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    out = io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode() + "\n"


def execute(path: str) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": FOLDER}}).execute()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                sys.exit(f"error: {os.path.basename(path)}: a cell failed: {output.get('ename')}: {output.get('evalue')}")
            if "image/png" in output.get("data", {}):
                output["data"]["image/png"] = compress_png(output["data"]["image/png"])
    notebook.metadata["rl_i2it"] = {"sources": [source_hash(c) for c in notebook.cells if c.cell_type == "code"]}
    nbformat.write(notebook, path)


def main(names: list[str]) -> None:
    paths = sorted(os.path.join(FOLDER, f) for f in os.listdir(FOLDER) if f.endswith(".ipynb"))
    if names:
        wanted = {n.removesuffix(".ipynb") for n in names}
        unknown = wanted - {os.path.basename(p).removesuffix(".ipynb") for p in paths}
        if unknown:
            sys.exit(f"error: no notebook named {', '.join(sorted(unknown))} in {FOLDER}")
        paths = [p for p in paths if os.path.basename(p).removesuffix(".ipynb") in wanted]
    for path in paths:
        start = time.time()
        print(f"{os.path.basename(path)} ...", end=" ", flush=True)
        execute(path)
        print(f"{time.time() - start:.0f} s, {os.path.getsize(path) / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
