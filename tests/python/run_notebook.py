"""Executes a notebook with nbclient against the installed `tunebook` kernel, as CI does.

Usage: run_notebook.py NOTEBOOK EXECUTED_COPY
The notebook runs with its own folder as working directory. Prints one JSON object: the
error (or null) and, per code cell, its source, seconds, and outputs (type, mime types,
text). The executed notebook is written to EXECUTED_COPY either way.
"""

import json
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def output_summary(output):
    data = output.get("data", {})
    text = output.get("text") or data.get("text/plain") or output.get("evalue") or ""
    return {
        "type": output["output_type"],
        "mimes": sorted(data.keys()),
        "text": text[-2000:],
        "html": data.get("text/html", "")[:20000],
        "svg": data.get("image/svg+xml", "")[:200000],
    }


def main():
    source, executed = sys.argv[1], sys.argv[2]
    nb = nbformat.read(source, as_version=4)
    workdir = source.rsplit("/", 1)[0] if "/" in source else "."
    client = NotebookClient(
        nb,
        kernel_name="tunebook",
        timeout=1800,
        startup_timeout=1800,
        resources={"metadata": {"path": workdir}},
    )
    error = None
    started = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as failure:
        error = str(failure)[-6000:]
    except Exception as failure:  # kernel died, timeout: still report what ran
        error = f"{type(failure).__name__}: {failure}"[-6000:]
    finally:
        nbformat.write(nb, executed)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        seconds = None
        if "shell.execute_reply" in timing and "iopub.execute_input" in timing:
            from datetime import datetime

            parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
            seconds = (parse(timing["shell.execute_reply"]) - parse(timing["iopub.execute_input"])).total_seconds()
        cells.append({"source": cell.source, "seconds": seconds, "outputs": [output_summary(o) for o in cell.get("outputs", [])]})
    print(json.dumps({"error": error, "seconds": time.monotonic() - started, "cells": cells}))


if __name__ == "__main__":
    main()
