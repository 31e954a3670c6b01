"""Kernel latency, tunebook-kernel next to stock evcxr_jupyter, both given the tunebook library.

Usage: kernel_latency.py TUNEBOOK_KERNEL EVCXR_JUPYTER LIB_DIR RUNS STOCK_BUILD_DIR
Prints one JSON object: per kernel, seconds from start to the kernel_info reply, seconds from
start until a cell calling the library has returned, and the median latency (execute_request
to execute_reply) of `1 + 1` and of that library cell over RUNS executions each.

Both kernels start from a kernelspec through jupyter_client, as a Jupyter server starts them,
and both use their warm build cache, each the way its users keep one:
* tunebook-kernel: `install --prefix` writes the spec and prebuilds the library template
  (only what changed since last time);
* evcxr_jupyter: the library comes in with `:dep tunebook = { path = LIB_DIR }`, and
  EVCXR_TMPDIR points at STOCK_BUILD_DIR, so dependencies compiled by an earlier session are
  reused (evcxr's documented way to keep them; without it every kernel start rebuilds them).
The one-time costs (template build; first `:dep` in an empty build directory) are reported
separately when this run paid them.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jupyter_client.manager import KernelManager

ONE_PLUS_ONE = "1 + 1"
# Runs in ~10 ms; what is measured is what the kernel adds around a library call.
LIBRARY_CELL = """{
    let rows = data::quickstart().unwrap().len();
    let t = Tensor::ones(&[128, 128], (Kind::Float, tch::Device::Cpu));
    (rows, t.matmul(&t).sum(Kind::Float).double_value(&[]))
}"""
LIBRARY_RESULT = "(64, 2097152.0)"
TIMEOUT = 3 * 3600


class Session:
    def __init__(self, kernel_name, spec_path):
        os.environ["JUPYTER_PATH"] = spec_path
        self.started = time.monotonic()
        self.manager = KernelManager(kernel_name=kernel_name)
        # The kernels' own output (build logs) goes to stderr: stdout carries the result.
        self.manager.start_kernel(stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno())
        self.client = self.manager.client()
        self.client.start_channels()

    def seconds_since_start(self):
        return time.monotonic() - self.started

    def kernel_info_seconds(self):
        msg_id = self.client.kernel_info()
        while True:
            reply = self.client.get_shell_msg(timeout=120)
            if reply["parent_header"].get("msg_id") == msg_id:
                return self.seconds_since_start()

    def execute(self, code):
        """Seconds from request to reply, and the text/plain result (None if there is none)."""
        sent = time.monotonic()
        msg_id = self.client.execute(code)
        while True:
            reply = self.client.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        seconds = time.monotonic() - sent
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code!r}: {reply['content']}")
        result = None
        while True:
            message = self.client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "execute_result":
                result = message["content"]["data"].get("text/plain")
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return seconds, result

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def library_cell(session):
    seconds, result = session.execute(LIBRARY_CELL)
    if result != LIBRARY_RESULT:
        raise RuntimeError(f"library cell returned {result!r}, expected {LIBRARY_RESULT!r}")
    return seconds


def measure(session, load_library, runs):
    figures = {"kernel_info_s": session.kernel_info_seconds()}
    load_library(session)
    library_cell(session)
    figures["library_usable_s"] = session.seconds_since_start()
    one_plus_one = []
    for _ in range(runs):
        seconds, result = session.execute(ONE_PLUS_ONE)
        if result != "2":
            raise RuntimeError(f"1 + 1 returned {result!r}")
        one_plus_one.append(seconds)
    figures["one_plus_one_s"] = statistics.median(one_plus_one)
    figures["library_cell_s"] = statistics.median(library_cell(session) for _ in range(runs))
    return figures


def tunebook(binary, runs):
    prefix = tempfile.mkdtemp(prefix="tb-latency-")
    started = time.monotonic()
    subprocess.run([binary, "install", "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
    install_s = time.monotonic() - started
    session = Session("tunebook", os.path.join(prefix, "share", "jupyter"))
    try:
        figures = measure(session, lambda s: None, runs)
    finally:
        session.close()
    figures["install_s"] = install_s
    return figures


def stock(binary, lib_dir, runs, build_dir):
    spec_root = tempfile.mkdtemp(prefix="evcxr-latency-")
    spec_dir = os.path.join(spec_root, "kernels", "stock-evcxr")
    os.makedirs(spec_dir)
    # Cells are shared objects linking Rust's std and libtorch dynamically: evcxr's relative
    # rpath to std resolves only when its build directory sits near the filesystem root (a
    # default /tmp/.tmpXXXX does), and libtorch is found only through the loader's path, so
    # both go on LD_LIBRARY_PATH, as our kernel does for its cells.
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], check=True, capture_output=True, text=True).stdout.strip()
    host = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout.split("host: ")[1].split()[0]
    library_path = [os.path.join(sysroot, "lib", "rustlib", host, "lib")]
    env = {"EVCXR_TMPDIR": build_dir}
    if "LIBTORCH" in os.environ:
        env["LIBTORCH"] = os.environ["LIBTORCH"]
        library_path.append(os.path.join(os.environ["LIBTORCH"], "lib"))
    env["LD_LIBRARY_PATH"] = ":".join(library_path + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p])
    with open(os.path.join(spec_dir, "kernel.json"), "w") as spec:
        json.dump({"argv": [binary, "--control_file", "{connection_file}"], "display_name": "Rust (stock evcxr)", "language": "rust", "env": env}, spec)

    def load_library(session):
        session.execute(f':dep tunebook = {{ path = "{lib_dir}" }}')
        session.execute("use tunebook::prelude::*;")

    figures = {}
    os.makedirs(build_dir, exist_ok=True)
    warm = os.path.join(build_dir, "tunebook-bench-warm")
    if not os.path.exists(warm):
        # First use of this build directory (or an earlier first use failed): evcxr compiles
        # the library and all its dependencies once; later sessions reuse them.
        session = Session("stock-evcxr", spec_root)
        try:
            session.kernel_info_seconds()
            load_library(session)
            library_cell(session)
            figures["first_dep_s"] = session.seconds_since_start()
        finally:
            session.close()
        open(warm, "w").close()
    session = Session("stock-evcxr", spec_root)
    try:
        figures.update(measure(session, load_library, runs))
    finally:
        session.close()
    return figures


def main():
    tunebook_bin, stock_bin, lib_dir, runs, build_dir = sys.argv[1:6]
    runs = int(runs)
    result = {"runs": runs, "tunebook": tunebook(tunebook_bin, runs), "stock": stock(stock_bin, lib_dir, runs, build_dir)}
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
