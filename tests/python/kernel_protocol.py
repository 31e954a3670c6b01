"""Talks Jupyter protocol 5.3 to tunebook-kernel with jupyter_client, as a notebook would.

Usage: kernel_protocol.py SCENARIO
  SCENARIO: basic | interrupt | shutdown | stdin | soak | preload | real
Environment: TUNEBOOK_KERNEL_BIN (the kernel binary), TUNEBOOK_TEST_MINILIB (for preload:
a stand-in library crate directory). Exits non-zero with a message on the first failed check.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session


class CheckFailed(Exception):
    pass


def check(condition, message, *context):
    if not condition:
        details = "\n".join(json.dumps(c, indent=1, default=str)[:4000] for c in context)
        raise CheckFailed(f"{message}\n{details}")


class Kernel:
    def __init__(self, env_overrides):
        self.dir = tempfile.mkdtemp(prefix="tb-kernel-test-")
        self.key = os.urandom(16).hex().encode()
        self.connection_file, self.info = write_connection_file(
            os.path.join(self.dir, "connection.json"), ip="127.0.0.1", key=self.key
        )
        env = dict(os.environ)
        env.update(env_overrides)
        self.log_path = os.path.join(self.dir, "kernel.log")
        self.log = open(self.log_path, "w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [os.environ["TUNEBOOK_KERNEL_BIN"], "--connection-file", self.connection_file],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = BlockingKernelClient(connection_file=self.connection_file)
        self.client.load_connection_file()
        self.client.start_channels()

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def reply_to(self, msg_id, timeout, channel="shell"):
        get = self.client.get_shell_msg if channel == "shell" else self.client.get_control_msg
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no {channel} reply to {msg_id} within {timeout} s", self.log_text())
            msg = get(timeout=left)
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def outputs_until_idle(self, msg_id, timeout):
        """IOPub messages caused by msg_id, up to and including its idle status."""
        deadline = time.monotonic() + timeout
        collected = []
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no idle for {msg_id} within {timeout} s", collected, self.log_text())
            msg = self.client.get_iopub_msg(timeout=left)
            msg["received_at"] = time.monotonic()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            collected.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return collected

    def execute(self, code, timeout=300, **kwargs):
        msg_id = self.client.execute(code, **kwargs)
        outputs = self.outputs_until_idle(msg_id, timeout)
        reply = self.reply_to(msg_id, timeout)
        reply["received_at"] = time.monotonic()
        return reply, outputs

    def wait_for_iopub(self, attempts=20):
        """IOPub drops messages until the subscription is in place: ping until it carries one."""
        for _ in range(attempts):
            msg_id = self.client.kernel_info()
            self.reply_to(msg_id, 30)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    msg = self.client.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
                except Exception:
                    break
                if msg["parent_header"].get("msg_id") == msg_id:
                    return
        raise CheckFailed("IOPub never delivered a message")

    def control(self, msg_type, content, timeout=30):
        msg = self.client.session.msg(msg_type, content)
        self.client.control_channel.send(msg)
        return self.reply_to(msg["header"]["msg_id"], timeout, channel="control")

    def close(self):
        self.client.stop_channels()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def streams(outputs, name="stdout"):
    return "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == name
    )


def of_type(outputs, msg_type):
    return [m for m in outputs if m["msg_type"] == msg_type]


def expect_ok(kernel, code, timeout=300):
    reply, outputs = kernel.execute(code, timeout=timeout)
    check(reply["content"]["status"] == "ok", f"cell failed: {code!r}", reply["content"], outputs)
    return reply, outputs


def scenario_basic(kernel):
    # Sockets up (process start time is not what is measured here)...
    kernel.reply_to(kernel.client.kernel_info(), 60)
    # ...then kernel_info is answered at once while the engine is still starting.
    msg_id = kernel.client.kernel_info()
    sent = time.monotonic()
    info = kernel.reply_to(msg_id, 30)
    latency = time.monotonic() - sent
    check(info["content"]["protocol_version"] == "5.3", "protocol version", info["content"])
    check(info["content"]["language_info"]["name"] == "rust", "language", info["content"])
    check(latency < 1.0, f"kernel_info took {latency:.2f} s")
    print(f"kernel_info latency {latency * 1000:.0f} ms")
    kernel.wait_for_iopub()

    started = time.monotonic()
    reply, outputs = expect_ok(kernel, 'println!("hello from rust");')
    print(f"first cell (includes evcxr start) {time.monotonic() - started:.2f} s")
    check(streams(outputs) == "hello from rust\n", "stdout stream", outputs)
    check(reply["content"]["execution_count"] == 1, "first execution_count", reply["content"])
    check([m["msg_type"] for m in outputs][:2] == ["status", "execute_input"], "busy then execute_input", outputs)
    check(outputs[0]["content"]["execution_state"] == "busy", "busy first", outputs)

    started = time.monotonic()
    reply, outputs = expect_ok(kernel, "let answer = 40 + 2;\nanswer")
    print(f"cell latency {time.monotonic() - started:.2f} s")
    check(reply["content"]["execution_count"] == 2, "execution_count increments", reply["content"])
    results = of_type(outputs, "execute_result")
    check(len(results) == 1 and results[0]["content"]["data"]["text/plain"] == "42", "execute_result", outputs)

    # Output is streamed while the cell runs, not collected at the end.
    reply, outputs = expect_ok(
        kernel, 'println!("first");\nstd::thread::sleep(std::time::Duration::from_millis(1500));\nprintln!("second");'
    )
    first = [m for m in of_type(outputs, "stream") if "first" in m["content"]["text"]]
    check(first, "stream 'first'", outputs)
    lead = reply["received_at"] - first[0]["received_at"]
    check(lead > 1.0, f"'first' arrived only {lead:.2f} s before the reply: not live", outputs)

    # stderr has its own pipe: all of it, up to an unfinished last line, still comes before
    # the cell's idle (the last pipe-full used to arrive late on a loaded machine).
    reply, outputs = expect_ok(kernel, 'for i in 0..20000 { eprintln!("err {i}"); }\neprint!("tail");')
    lines = streams(outputs, "stderr").splitlines()
    check(len(lines) == 20001 and lines[-2] == "err 19999" and lines[-1] == "tail", "all stderr before idle", lines[-3:], len(lines))

    reply, outputs = kernel.execute('let a = 1;\nlet x: i32 = "text";')
    content = reply["content"]
    check(content["status"] == "error", "compile error status", content)
    check(content["ename"] == "CompileError", "compile error ename", content)
    check("E0308" in content["evalue"] and "cell line 2" in content["evalue"], "evalue names code and line", content)
    check(any("cell line 2" in line for line in content["traceback"]), "traceback points at line 2", content)
    check(any('let x: i32 = "text";' in line for line in content["traceback"]), "traceback quotes the line", content)
    check(of_type(outputs, "error"), "error on iopub", outputs)
    check(content["execution_count"] == 5, "failed cells count too", content)

    reply, outputs = kernel.execute('let n = 3;\npanic!("boom {n}");')
    content = reply["content"]
    check(content["status"] == "error" and content["ename"] == "panic", "panic status", content)
    check(content["evalue"] == "boom 3", "panic message", content)
    check(any("cell line 2" in line for line in content["traceback"]), "panic line", content)
    check(streams(outputs, "stderr") == "", "panic text (and Rust's empty line before it) not on stderr", outputs)

    # State survives a panic in another cell.
    reply, outputs = expect_ok(kernel, 'println!("{}", answer);')
    check(streams(outputs) == "42\n", "variable kept", outputs)

    display_cell = "\n".join(
        f'println!("{{}}", r#"{line}"#);'
        for line in [
            'TUNEBOOK_DISPLAY {"display_id": "progress", "update": false, "data": {"text/html": "<b>0%</b>", "text/plain": "0%"}}',
            'TUNEBOOK_DISPLAY {"display_id": "progress", "update": true, "data": {"text/html": "<b>100%</b>", "text/plain": "100%"}}',
            'TUNEBOOK_DISPLAY {"display_id": null, "update": false, "data": {"image/svg+xml": "<svg></svg>"}}',
            'TUNEBOOK_CLEAR {"wait": true}',
        ]
    )
    reply, outputs = expect_ok(kernel, display_cell)
    kinds = [m["msg_type"] for m in outputs if m["msg_type"] not in ("status", "execute_input")]
    check(kinds == ["display_data", "update_display_data", "display_data", "clear_output"], "display sequence", kinds)
    shown, updated, svg, cleared = [m["content"] for m in outputs if m["msg_type"] in ("display_data", "update_display_data", "clear_output")]
    check(shown["transient"] == {"display_id": "progress"} and shown["data"]["text/html"] == "<b>0%</b>", "display", shown)
    check(updated["transient"] == {"display_id": "progress"} and updated["data"]["text/plain"] == "100%", "update", updated)
    check(svg["transient"] == {} and svg["data"]["image/svg+xml"] == "<svg></svg>", "display without id", svg)
    check(cleared["wait"] is True, "clear_output wait", cleared)
    check("TUNEBOOK" not in streams(outputs), "wire format is not shown as text", outputs)

    reply, outputs = expect_ok(kernel, 'println!("EVCXR_BEGIN_CONTENT text/html\\n<i>rich</i>\\nEVCXR_END_CONTENT");')
    results = of_type(outputs, "execute_result")
    check(results and results[0]["content"]["data"].get("text/html") == "<i>rich</i>", "evcxr content", outputs)

    reply, outputs = expect_ok(kernel, 'print!("no newline at the end");', timeout=60)
    check(streams(outputs) == "no newline at the end\n", "unterminated print", outputs)

    for code, status, indent in [("fn f() {\n    let v = vec![1,", "incomplete", "        "), ("let x = 1;", "complete", None), ("let x = (1];", "invalid", None), ('let s = "open', "incomplete", "")]:
        msg_id = kernel.client.is_complete(code)
        content = kernel.reply_to(msg_id, 10)["content"]
        check(content["status"] == status, f"is_complete({code!r})", content)
        if indent is not None:
            check(content["indent"] == indent, f"indent for {code!r}", content)

    msg_id = kernel.client.history(hist_access_type="tail", n=2)
    history = kernel.reply_to(msg_id, 10)["content"]["history"]
    check([entry[2] for entry in history][-1] == 'print!("no newline at the end");', "history tail", history)

    msg_id = kernel.client.comm_info()
    check(kernel.reply_to(msg_id, 10)["content"]["comms"] == {}, "comm_info")

    code = "let v: Vec<u8> = Vec::new();\nv.cap"
    msg_id = kernel.client.complete(code, len(code))
    completion = kernel.reply_to(msg_id, 120)["content"]
    check(any(m.startswith("capacity") for m in completion["matches"]), "completion of v.cap", completion)
    check(completion["cursor_end"] == len(code) and completion["cursor_start"] == len(code) - 3, "completion range", completion)

    # A message signed with the wrong key is dropped and never executed.
    context = zmq.Context.instance()
    intruder = context.socket(zmq.DEALER)
    intruder.connect(f"tcp://127.0.0.1:{kernel.info['shell_port']}")
    forged = Session(key=b"not-the-key", username="intruder")
    forged.send(intruder, "execute_request", {"code": 'println!("FORGED");', "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    check(intruder.poll(3000) == 0, "forged request got a reply")
    intruder.close(linger=0)
    check("rejected a message on shell" in kernel.log_text(), "rejection is logged", kernel.log_text())
    reply, outputs = expect_ok(kernel, 'println!("still fine");')
    check(streams(outputs) == "still fine\n", "kernel works after forged message", outputs)
    check(reply["content"]["execution_count"] == 11, "forged request was not counted", reply["content"])

    # stop_on_error: cells queued behind a failing one are aborted.
    first = kernel.client.execute("let broken: i32 = ();")
    second = kernel.client.execute('println!("must not run");')
    check(kernel.reply_to(first, 120)["content"]["status"] == "error", "first fails")
    check(kernel.reply_to(second, 120)["content"]["status"] == "aborted", "queued cell aborted")


def scenario_interrupt(kernel):
    kernel.wait_for_iopub()
    expect_ok(kernel, "let kept = 41;")
    msg_id = kernel.client.execute('println!("spinning");\nloop { std::thread::sleep(std::time::Duration::from_millis(5)); }')
    deadline = time.monotonic() + 120
    while True:
        check(time.monotonic() < deadline, "cell never started")
        msg = kernel.client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    sent = time.monotonic()
    interrupt = kernel.control("interrupt_request", {})
    check(interrupt["content"]["status"] == "ok", "interrupt_reply", interrupt["content"])
    reply = kernel.reply_to(msg_id, 30)["content"]
    print(f"interrupt to reply {time.monotonic() - sent:.2f} s")
    check(reply["status"] == "error" and reply["ename"] == "Interrupted", "interrupted reply", reply)
    check("variables are gone" in reply["evalue"], "says what was lost", reply)
    # The cell process died of SIGINT: variables are gone, the kernel works on.
    reply, _ = kernel.execute('println!("{kept}");')
    check(reply["content"]["status"] == "error", "variable lost after hard interrupt", reply["content"])
    reply, outputs = expect_ok(kernel, 'println!("alive");')
    check(streams(outputs) == "alive\n", "kernel usable after interrupt", outputs)
    # Interrupt with nothing running is harmless.
    check(kernel.control("interrupt_request", {})["content"]["status"] == "ok", "idle interrupt")
    reply, outputs = expect_ok(kernel, 'println!("still alive");')


def scenario_shutdown(kernel):
    kernel.wait_for_iopub()
    expect_ok(kernel, 'println!("up");')
    work_dirs = [line.split()[-1] for line in kernel.log_text().splitlines() if "build directory" in line]
    reply = kernel.control("shutdown_request", {"restart": False})
    check(reply["content"] == {"status": "ok", "restart": False}, "shutdown_reply", reply["content"])
    try:
        code = kernel.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise CheckFailed("kernel still running 15 s after shutdown_request")
    check(code == 0, f"exit status {code}", kernel.log_text())
    for directory in work_dirs:
        check(not os.path.exists(directory), f"build directory {directory} left behind")
    check(work_dirs, "kernel logs its build directory", kernel.log_text())


def scenario_preload(kernel):
    kernel.wait_for_iopub()
    # The first cell waits for the preload; kernel_info must not.
    first = kernel.client.execute("greet()")
    msg_id = kernel.client.kernel_info()
    sent = time.monotonic()
    kernel.reply_to(msg_id, 30)
    latency = time.monotonic() - sent
    print(f"kernel_info latency during preload {latency * 1000:.0f} ms")
    check(latency < 1.0, f"kernel_info during preload took {latency:.2f} s")
    outputs = kernel.outputs_until_idle(first, 600)
    reply = kernel.reply_to(first, 600)
    print(f"preload and first cell {time.monotonic() - kernel.started:.1f} s after start")
    check(reply["content"]["status"] == "ok", "prelude function callable", reply["content"], outputs, kernel.log_text())
    check("tunebook:" in streams(outputs, "stdout"), "preload progress shown in the waiting cell", outputs)
    results = of_type(outputs, "execute_result")
    check(results and "hello from the preloaded library" in results[0]["content"]["data"]["text/plain"], "greet()", outputs)

    started = time.monotonic()
    expect_ok(kernel, "let first_call = bump();")
    print(f"first cell with let after preload {time.monotonic() - started:.2f} s")
    started = time.monotonic()
    reply, outputs = expect_ok(kernel, 'println!("{} {}", first_call, bump());')
    print(f"cell latency with library {time.monotonic() - started:.2f} s")
    check(streams(outputs) == "1 2\n", "cells share the library's statics", outputs)

    reply, outputs = expect_ok(kernel, 'println!("{}", std::env::var("TUNEBOOK_KERNEL").unwrap_or_default());')
    check(streams(outputs) == "1\n", "TUNEBOOK_KERNEL=1 in cells", outputs)

    reply, outputs = expect_ok(kernel, 'tunebook::show_progress("train", 10, false);\nshow_progress("train", 90, true);')
    kinds = [(m["msg_type"], m["content"].get("transient")) for m in outputs if "display" in m["msg_type"]]
    check(kinds == [("display_data", {"display_id": "train"}), ("update_display_data", {"display_id": "train"})], "library displays", kinds)

    # A library that handles SIGINT stops gracefully and every variable survives.
    expect_ok(kernel, "let kept = 41;")
    msg_id = kernel.client.execute("let steps = wait_for_interrupt();")
    while True:
        msg = kernel.client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            break
    kernel.control("interrupt_request", {})
    reply = kernel.reply_to(msg_id, 30)["content"]
    check(reply["ename"] == "Interrupted" and "variables are kept" in reply["evalue"], "graceful interrupt", reply)
    reply, outputs = expect_ok(kernel, 'println!("{} {}", kept, steps > 0);')
    check(streams(outputs) == "41 true\n", "state kept after graceful interrupt", outputs)


def library_changed_since_last_start(env):
    """Edit the library after a kernel built it: the next kernel rebuilds and sees the edit."""
    with open(os.path.join(env["TUNEBOOK_LIB_DIR"], "src", "lib.rs"), "a") as source:
        source.write("\npub fn added_after_the_first_kernel() -> u32 { 7 }\n")
    kernel = Kernel(env)
    try:
        kernel.wait_for_iopub()
        reply, outputs = kernel.execute("tunebook::added_after_the_first_kernel()", timeout=600)
        check(reply["content"]["status"] == "ok", "the edited library is loaded", reply["content"], outputs, kernel.log_text())
        check("the library changed" in streams(outputs), "the rebuild is announced", outputs)
        results = of_type(outputs, "execute_result")
        check(results and results[0]["content"]["data"]["text/plain"] == "7", "the new function's result", outputs)
    finally:
        kernel.close()


def scenario_stdin(kernel):
    kernel.wait_for_iopub()
    # evcxr_input is evcxr's way for a cell to read a line: it becomes input_request.
    expect_ok(kernel, ':dep evcxr_input = "1"', timeout=600)
    msg_id = kernel.client.execute('let name = evcxr_input::get_string("Name? ");\nprintln!("hi {name}");', allow_stdin=True)
    request = kernel.client.get_stdin_msg(timeout=300)
    check(request["msg_type"] == "input_request" and request["content"]["prompt"] == "Name? ", "input_request", request)
    kernel.client.input("Ada")
    outputs = kernel.outputs_until_idle(msg_id, 120)
    check(kernel.reply_to(msg_id, 60)["content"]["status"] == "ok", "cell with input")
    check(streams(outputs) == "hi Ada\n", "input value reaches the cell", outputs)


SOAK_CELLS = 500
SOAK_WINDOW = 50
# Latency may not grow by more than this factor (median of the last window over the first).
SOAK_LATENCY_GROWTH = 1.5
# RSS bounds, from the end of the first window to the last cell (450 cells).
# * Kernel: it keeps per cell only a history entry (~100 bytes) and evcxr's bookkeeping; its
#   RSS stayed flat in measurements. 32 MiB leaves room for allocator and rust-analyzer cache
#   noise, while leaking a message, an output buffer or an analysis snapshot per cell (75 KiB
#   or more each) fails.
# * Cell process: it loads every compiled cell as a shared object it cannot unload (values
#   from a cell may point into its code), about 40 KiB of resident mappings each (measured:
#   12.5 -> 30.1 MiB over 450 cells). 64 MiB allows that with margin, while a leaked buffer of
#   150 KiB or more per cell fails.
SOAK_KERNEL_RSS_GROWTH_MIB = 32
SOAK_CELL_RSS_GROWTH_MIB = 64


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cell_process_pid(kernel):
    """The long-lived evcxr child (the kernel binary again) that runs the cells."""
    binary = os.path.realpath(os.environ["TUNEBOOK_KERNEL_BIN"])
    pid = kernel.process.pid
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(child) for child in f.read().split()]
    for child in children:
        try:
            if os.path.realpath(f"/proc/{child}/exe") == binary:
                return child
        except OSError:
            continue
    return None


def tree_mib(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 2**20


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def scenario_soak(kernel):
    """SOAK_CELLS consecutive small cells: latency and memory must not grow."""
    kernel.wait_for_iopub()
    expect_ok(kernel, 'println!("warm");')  # starts evcxr; not part of the measurement
    work_dir = next(line.split()[-1] for line in kernel.log_text().splitlines() if "build directory" in line)
    latencies, memory = [], {}
    started = time.monotonic()
    for i in range(SOAK_CELLS):
        if i % 2 == 0:
            code, expected = "1 + 1", ("", "2")
        else:
            code, expected = f'let soak = {i};\nprintln!("soak {{soak}}");', (f"soak {i}\n", None)
        sent = time.monotonic()
        reply, outputs = expect_ok(kernel, code, timeout=120)
        latencies.append(time.monotonic() - sent)
        results = of_type(outputs, "execute_result")
        shown = results[0]["content"]["data"]["text/plain"] if results else None
        check((streams(outputs), shown) == expected, f"output of soak cell {i}", outputs)
        if i + 1 in (SOAK_WINDOW, SOAK_CELLS):
            cell_pid = cell_process_pid(kernel)
            memory[i + 1] = (rss_mib(kernel.process.pid), cell_pid and rss_mib(cell_pid), tree_mib(work_dir))
    total = time.monotonic() - started
    first, last = median(latencies[:SOAK_WINDOW]), median(latencies[-SOAK_WINDOW:])
    (kernel_first, cell_first, disk_first), (kernel_last, cell_last, disk_last) = memory[SOAK_WINDOW], memory[SOAK_CELLS]
    print(f"soak: {SOAK_CELLS} cells in {total:.0f} s ({total / SOAK_CELLS:.2f} s per cell)")
    print(f"soak: median latency first {SOAK_WINDOW} {first * 1000:.0f} ms, last {SOAK_WINDOW} {last * 1000:.0f} ms "
          f"({(last / first - 1) * 100:+.0f}%); max {max(latencies) * 1000:.0f} ms")
    print(f"soak: kernel RSS {kernel_first:.1f} MiB after {SOAK_WINDOW} cells, {kernel_last:.1f} MiB after {SOAK_CELLS}")
    print(f"soak: cell process RSS {cell_first:.1f} MiB after {SOAK_WINDOW} cells, {cell_last:.1f} MiB after {SOAK_CELLS}")
    print(f"soak: build directory {disk_first:.0f} MiB after {SOAK_WINDOW} cells, {disk_last:.0f} MiB after {SOAK_CELLS}")
    check(last <= first * SOAK_LATENCY_GROWTH, f"median latency grew from {first:.3f} s to {last:.3f} s")
    check(kernel_last - kernel_first <= SOAK_KERNEL_RSS_GROWTH_MIB,
          f"kernel RSS grew by {kernel_last - kernel_first:.1f} MiB")
    check(cell_first is not None and cell_last is not None, "cell process found under the kernel")
    check(cell_last - cell_first <= SOAK_CELL_RSS_GROWTH_MIB,
          f"cell process RSS grew by {cell_last - cell_first:.1f} MiB")


def scenario_real(kernel):
    """The real tunebook library: minutes cold, seconds once `tunebook-kernel warm` ran."""
    kernel.wait_for_iopub()
    first = kernel.client.execute('println!("{:?}", tunebook::device::best_device());')
    msg_id = kernel.client.kernel_info()
    sent = time.monotonic()
    kernel.reply_to(msg_id, 30)
    latency = time.monotonic() - sent
    print(f"kernel_info latency during preload {latency * 1000:.0f} ms")
    check(latency < 1.0, f"kernel_info during preload took {latency:.2f} s")
    outputs = kernel.outputs_until_idle(first, 3600)
    reply = kernel.reply_to(first, 60)
    print(f"preload and first cell {time.monotonic() - kernel.started:.1f} s after start")
    print(streams(outputs, "stderr"))
    check(reply["content"]["status"] == "ok", "library call (loads libtorch)", reply["content"], outputs, kernel.log_text())
    printed = [line for line in streams(outputs).splitlines() if not line.startswith("tunebook:")]
    check(printed in (["Cpu"], ["Cuda(0)"]), "device printed after the preload's progress", outputs)
    # Variables of library types (typed by rust-analyzer from the library's sources) and a
    # tensor op the library itself never calls (linked from the prebuilt facade).
    cells = [
        ("let device = tunebook::device::best_device();", None),
        ('println!("{:?}", device);', ["Cpu", "Cuda(0)"]),
        ("let ones = Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu));", None),
        ('println!("{}", ones.cumsum(1, Kind::Float).sum(Kind::Float).double_value(&[]));', ["12"]),
    ]
    for code, expected in cells:
        started = time.monotonic()
        reply, outputs = kernel.execute(code, timeout=300)
        print(f"cell {code!r}: {time.monotonic() - started:.2f} s")
        check(reply["content"]["status"] == "ok", f"cell failed: {code!r}", reply["content"], outputs)
        if expected is not None:
            check(streams(outputs).strip() in expected, f"output of {code!r}", outputs)


SCENARIOS = {
    "real": (scenario_real, {"TUNEBOOK_LIB_DIR": os.path.join(os.path.dirname(__file__), "..", "..", "lib")}),
    "stdin": (scenario_stdin, {"TUNEBOOK_KERNEL_PRELOAD": "0"}),
    "basic": (scenario_basic, {"TUNEBOOK_KERNEL_PRELOAD": "0"}),
    "interrupt": (scenario_interrupt, {"TUNEBOOK_KERNEL_PRELOAD": "0"}),
    "shutdown": (scenario_shutdown, {"TUNEBOOK_KERNEL_PRELOAD": "0"}),
    "soak": (scenario_soak, {"TUNEBOOK_KERNEL_PRELOAD": "0"}),
    "preload": (scenario_preload, {}),
}


def main():
    name = sys.argv[1]
    scenario, env = SCENARIOS[name]
    env = dict(env)
    scratch = None
    if name == "preload":
        # A throwaway repository layout: <repo>/lib is the stand-in library.
        scratch = tempfile.mkdtemp(prefix="tb-preload-")
        shutil.copytree(os.environ["TUNEBOOK_TEST_MINILIB"], os.path.join(scratch, "lib"))
        env["TUNEBOOK_LIB_DIR"] = os.path.join(scratch, "lib")
        env["TUNEBOOK_KERNEL_CACHE"] = os.path.join(scratch, "cache")
    kernel = Kernel(env)
    try:
        scenario(kernel)
        if name == "preload":
            kernel.close()
            library_changed_since_last_start(env)
    except (CheckFailed, Exception) as error:
        print(f"FAILED {name}: {error}", file=sys.stderr)
        print("--- kernel log ---\n" + kernel.log_text()[-6000:], file=sys.stderr)
        sys.exit(1)
    finally:
        kernel.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{name}: ok")


if __name__ == "__main__":
    main()
