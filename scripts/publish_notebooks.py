"""Copies the outputs of executed tutorial notebooks into notebooks/, trimmed for a code host.

Usage: .venv/bin/python scripts/publish_notebooks.py [EXECUTED_DIR]
EXECUTED_DIR defaults to <cargo target>/debug/executed-notebooks, where the notebook tests
(kernel/tests/notebooks.rs) leave the copies they ran. Kept: each cell's final outputs
(tables, charts, printed text). Dropped: the kernel's preload progress lines, and anything
naming an absolute path. The sources stay as they are in notebooks/; only outputs and
execution counts change. tests/notebook_files.rs checks the result (size, no absolute paths).
"""

import json
import os
import re
import subprocess
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSOLUTE_PATH = re.compile(r"(/root/|/home/|/tmp/|/work/|/Users/)")


def default_executed_dir():
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True, check=True, text=True
    )
    return os.path.join(json.loads(metadata.stdout)["target_directory"], "debug", "executed-notebooks")


def output_text(output):
    parts = [output.get("text", "")]
    for value in output.get("data", {}).values():
        parts.append(value if isinstance(value, str) else json.dumps(value))
    parts.append(output.get("evalue", ""))
    return "\n".join(p if isinstance(p, str) else "".join(p) for p in parts)


def keep(output):
    if output.get("output_type") == "stream" and output_text(output).lstrip().startswith("tunebook:"):
        return False
    return not ABSOLUTE_PATH.search(output_text(output))


def main():
    executed_dir = sys.argv[1] if len(sys.argv) > 1 else default_executed_dir()
    published = 0
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        source_path = os.path.join(ROOT, "notebooks", name)
        executed_path = os.path.join(executed_dir, name)
        if not name.endswith(".ipynb") or not os.path.exists(executed_path):
            continue
        source = nbformat.read(source_path, as_version=4)
        executed = nbformat.read(executed_path, as_version=4)
        ran = {cell.source: cell for cell in executed.cells if cell.cell_type == "code"}
        for cell in source.cells:
            if cell.cell_type != "code":
                continue
            done = ran.get(cell.source)
            cell.outputs = [o for o in done.outputs if keep(o)] if done else []
            cell.execution_count = done.execution_count if done else None
            for output in cell.outputs:
                output.pop("transient", None)
        nbformat.write(source, source_path)
        published += 1
        print(f"{name}: {os.path.getsize(source_path) / 1024:.0f} KiB")
    if published == 0:
        sys.exit(f"no executed notebooks in {executed_dir}: run the notebook tests first")


if __name__ == "__main__":
    main()
