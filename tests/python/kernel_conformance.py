"""The Jupyter project's conformance suite (jupyter_kernel_test) against tunebook-kernel.

The kernelspec is installed into a temporary prefix with `tunebook-kernel install --prefix
DIR --no-warm` and the kernel is started through it (JUPYTER_PATH=DIR/share/jupyter), as a
Jupyter server would. Cells are plain Rust (TUNEBOOK_KERNEL_PRELOAD=0): the suite is about
the protocol, not the library.

Usage: TUNEBOOK_KERNEL_BIN=target/debug/tunebook-kernel python tests/python/kernel_conformance.py
Exits non-zero if a check fails or a sample is skipped (only the pager has none: the kernel
sends no page payloads).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import jupyter_kernel_test
from jupyter_client import kernelspec

PREFIX = tempfile.mkdtemp(prefix="tb-kernelspec-")
EXPECTED_SKIPS = {"test_pager"}


def install_kernelspec():
    subprocess.run(
        [os.environ["TUNEBOOK_KERNEL_BIN"], "install", "--prefix", PREFIX, "--no-warm"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    os.environ["JUPYTER_PATH"] = os.path.join(PREFIX, "share", "jupyter")
    # Inherited by the kernel: the kernelspec's env does not set it.
    os.environ["TUNEBOOK_KERNEL_PRELOAD"] = "0"


def display_cell(line):
    """A cell printing one line of the kernel's live-display wire format (kernel/README.md)."""
    return f'println!("{{}}", r#"{line}"#);'


class TunebookKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "tunebook"
    language_name = "rust"
    file_extension = ".rs"

    code_hello_world = 'println!("hello, world");'
    code_stderr = 'eprintln!("to stderr");'

    code_execute_result = [
        {"code": "1 + 1", "result": "2"},
        {"code": 'let word = "tune";\nword.repeat(2)', "result": '"tunetune"'},
        {
            "code": 'println!("EVCXR_BEGIN_CONTENT text/html\\n<b>rich</b>\\nEVCXR_END_CONTENT");',
            "mime": "text/html",
            "result": "<b>rich</b>",
        },
    ]
    # Matches "1 + 1" only, so `unique` finds exactly one input.
    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")

    code_display_data = [
        {
            "code": display_cell(
                'TUNEBOOK_DISPLAY {"display_id": null, "update": false, '
                '"data": {"text/html": "<b>hi</b>", "text/plain": "hi"}}'
            ),
            "mime": "text/html",
        },
        {
            "code": display_cell(
                'TUNEBOOK_DISPLAY {"display_id": "plot", "update": false, '
                '"data": {"image/svg+xml": "<svg xmlns=\\"http://www.w3.org/2000/svg\\"/>", "text/plain": "plot"}}'
            ),
            "mime": "image/svg+xml",
        },
    ]
    code_clear_output = display_cell('TUNEBOOK_CLEAR {"wait": false}')

    code_generate_error = 'panic!("boom");'

    complete_code_samples = ["1 + 1", "let x = 1;", "fn f() {}", "struct Point { x: f32, y: f32 }", ":vars"]
    incomplete_code_samples = ["fn f() {", "let v = vec![1,", 'let s = "open', "let x = 1 +", "/* comment"]
    invalid_code_samples = ["let x = (1];", "}", "fn f() { ) }"]

    completion_samples = [
        # Methods complete with their parentheses, as evcxr offers them.
        {"text": "let v: Vec<u8> = Vec::new();\nv.capa", "matches": {"capacity()"}},
        {"text": "std::collections::BTree"},
    ]
    code_inspect_sample = "std::vec::Vec"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The first cell starts evcxr's build (seconds on a busy machine), longer than the
        # suite's 15 s per cell allows; kernel start-up is not what it checks.
        msg_id = cls.kc.execute('println!("ready");')
        reply = cls.kc.get_shell_msg(timeout=300)
        while reply["parent_header"].get("msg_id") != msg_id:  # late kernel_info replies
            reply = cls.kc.get_shell_msg(timeout=300)
        assert reply["content"]["status"] == "ok", reply

    def test_kernelspec_is_the_installed_one(self):
        spec = kernelspec.get_kernel_spec(self.kernel_name)
        self.assertTrue(spec.resource_dir.startswith(PREFIX), spec.resource_dir)
        self.assertEqual(spec.argv[0], os.path.realpath(os.environ["TUNEBOOK_KERNEL_BIN"]))
        self.assertTrue(os.path.isfile(os.path.join(spec.env["TUNEBOOK_LIB_DIR"], "Cargo.toml")), spec.env)
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            self.assertTrue(os.path.getsize(os.path.join(spec.resource_dir, logo)) > 0, logo)
        with open(os.path.join(spec.resource_dir, "kernel.json")) as f:
            self.assertEqual(json.load(f)["interrupt_mode"], "message")


def main():
    install_kernelspec()
    try:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(TunebookKernelTests)
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    finally:
        shutil.rmtree(PREFIX, ignore_errors=True)
    skipped = {test.id().split(".")[-1].split(" ")[0] for test, _ in result.skipped}
    unexpected = skipped - EXPECTED_SKIPS
    print(f"conformance: {result.testsRun} tests, {len(result.failures)} failures, "
          f"{len(result.errors)} errors, skipped {sorted(skipped)}")
    if not result.wasSuccessful() or unexpected:
        if unexpected:
            print(f"unexpected skips (a sample is missing): {sorted(unexpected)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
