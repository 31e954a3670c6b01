"""JupyterLab in headless Chromium: opens a notebook, runs its first code cell with the
installed `tunebook` kernel, waits for the output and saves a screenshot.

Usage: lab_screenshot.py NOTEBOOK_DIR NOTEBOOK SCREENSHOT_PNG
JUPYTER_PATH must point at the kernelspec (the Rust test sets it). Drives Chromium through
its DevTools protocol (tornado's websocket client; no chromedriver needed). Prints one JSON
object: the output text JupyterLab shows under the cell, seconds until it appeared, and
the screenshot size.
"""

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from tornado.websocket import websocket_connect


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


class DevTools:
    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.socket.write_message(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.socket.read_message())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.5)
        raise TimeoutError(f"waited {seconds} s for {what}")


async def drive(debug_port, url, screenshot):
    """Opens `url`, runs the first code cell, saves the screenshot; on failure saves what
    the page showed next to it (`.failed.png`) before raising."""
    targets = json.loads(wait_for_http(f"http://127.0.0.1:{debug_port}/json/list", 60))
    page = next(t for t in targets if t["type"] == "page")
    tools = DevTools(await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=64 << 20))
    await tools.call("Page.enable")
    await tools.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    await tools.call("Page.navigate", url=url)
    try:
        return await run_first_cell(tools, screenshot)
    except Exception:
        shot = await tools.call("Page.captureScreenshot", format="png")
        with open(screenshot + ".failed.png", "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        raise


PANEL = "Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.content && w.content.widgets && w.sessionContext)"


async def click(tools, selector_expression):
    """A real mouse click in the middle of the element (focus follows it, as for a user)."""
    box = await tools.evaluate(f"(() => {{ const r = ({selector_expression}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
    for kind in ("mousePressed", "mouseReleased"):
        await tools.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


async def run_first_cell(tools, screenshot):
    await tools.wait_until(f"!!(window.jupyterapp && {PANEL} && document.querySelector('.jp-Notebook .jp-CodeCell'))", 120, "the notebook to open")
    # Headless Chromium has no window focus: the news prompt stays up unless answered.
    await tools.evaluate("Array.from(document.querySelectorAll('button')).filter(b => b.textContent.trim() === 'No').forEach(b => b.click()); true")
    await tools.wait_until(f"!!(({PANEL}).sessionContext.session && ({PANEL}).sessionContext.session.kernel)", 180, "a kernel session")
    first = await tools.evaluate(f"({PANEL}).content.widgets.findIndex(cell => cell.model.type === 'code')")
    await click(tools, f"({PANEL}).content.widgets[{first}].node.querySelector('.jp-InputArea-editor')")
    started = time.monotonic()
    await tools.evaluate(
        f"""(async () => {{
            const panel = {PANEL};
            panel.content.activeCellIndex = {first};
            await window.jupyterapp.commands.execute('notebook:run-cell');
            return true;
        }})()"""
    )
    output = await tools.wait_until(
        f"""(() => {{
            const cell = ({PANEL}).content.widgets[{first}];
            const prompt = cell.node.querySelector('.jp-InputPrompt');
            const done = prompt && /\\[\\d+\\]/.test(prompt.textContent);
            const out = cell.node.querySelector('.jp-OutputArea');
            return done && out && out.innerText.trim().length > 0 ? out.innerText : null;
        }})()""",
        1500,
        "the cell's output",
    )
    seconds = time.monotonic() - started
    # Scroll so the cell and its output fill the view, then let rendering settle.
    await tools.evaluate(f"({PANEL}).content.widgets[{first}].node.scrollIntoView({{block: 'start'}}); true")
    await asyncio.sleep(1.0)
    shot = await tools.call("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    with open(screenshot, "wb") as f:
        f.write(png)
    return {"output": output[-4000:], "seconds": seconds, "screenshot_bytes": len(png)}


def main():
    notebook_dir, notebook, screenshot = sys.argv[1], sys.argv[2], sys.argv[3]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("chromium not found: install the Debian package `chromium` (.ci/run does)")
    lab_port, debug_port, token = free_port(), free_port(), "tunebook-screenshot"
    bin_dir = os.path.dirname(sys.executable)
    profile = tempfile.mkdtemp(prefix="tunebook-chromium-")
    lab = subprocess.Popen(
        [os.path.join(bin_dir, "jupyter"), "lab", "--no-browser", f"--port={lab_port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}", "--allow-root", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, "lab.log"), "w"),
    )
    browser = None
    try:
        wait_for_http(f"http://127.0.0.1:{lab_port}/api/status?token={token}", 120)
        browser = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--metrics-recording-only",
             f"--user-data-dir={profile}", f"--remote-debugging-port={debug_port}", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{lab_port}/lab/tree/{notebook}?token={token}&reset"
        summary = asyncio.run(drive(debug_port, url, screenshot))
        print(json.dumps(summary))
    finally:
        for process in (browser, lab):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
