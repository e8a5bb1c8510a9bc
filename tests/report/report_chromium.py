"""Drive headless Chromium over the DevTools protocol: load a page, then report its images, console errors,
failed loads and every URL it requested. A tiny synchronous CDP client on websocket-client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-allow-origins=*"]
IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
             "width: i.naturalWidth, height: i.naturalHeight, src: i.currentSrc.slice(0, 40)})))")


def find_chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        path = shutil.which(c)
        if path:
            return path
    return None


def require_chromium() -> str:
    """Chromium's path; fails under CI=true when it is missing (CI installs it), skips elsewhere."""
    path = find_chromium()
    if path is None:
        msg = "headless Chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class _Session:
    def __init__(self, ws_url: str, timeout: float):
        import websocket  # websocket-client (dev extra)

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(e["method"] == event for e in self.events):
                return
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {event} within {timeout} s")

    def drain(self, seconds: float) -> None:
        """Collect late events (console messages logged just after load)."""
        self.ws.settimeout(0.1)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                msg = json.loads(self.ws.recv())
            except Exception:  # timeout: nothing pending
                continue
            if "method" in msg:
                self.events.append(msg)


def load_page(html_path: Path, *, chromium: str, timeout: float = 60.0) -> dict:
    """Open ``html_path`` in headless Chromium and return what a reader's browser would see.

    Returns ``{"images": [...], "console_errors": [...], "failed_loads": [...], "requested": [...]}``.
    """
    user_dir = tempfile.mkdtemp(prefix="breastclip-chromium-")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={user_dir}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = Path(user_dir) / "DevToolsActivePort"
        end = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > end:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        s = _Session(page["webSocketDebuggerUrl"], timeout)
        for domain in ("Runtime", "Log", "Page", "Network"):
            s.send(f"{domain}.enable")
        s.send("Page.navigate", url=Path(html_path).resolve().as_uri())
        s.wait_for("Page.loadEventFired", timeout)
        s.drain(0.5)
        images = json.loads(s.send("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)["result"]["value"])
        title = s.send("Runtime.evaluate", expression="document.title", returnByValue=True)["result"]["value"]
        errors = []
        for e in s.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in {"error", "assert"}:
                errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                   for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", "")[:80])
        failed = [e["params"].get("errorText", "") for e in s.events if e["method"] == "Network.loadingFailed"]
        requested = [e["params"]["request"]["url"][:200] for e in s.events
                     if e["method"] == "Network.requestWillBeSent"]
        try:
            s.send("Browser.close")
        except Exception:  # the browser may close the socket before answering
            pass
        return {"images": images, "console_errors": errors, "failed_loads": failed, "requested": requested,
                "title": title}
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(user_dir, ignore_errors=True)
