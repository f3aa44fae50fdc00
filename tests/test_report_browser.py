"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

The protocol runs over a pipe (``--remote-debugging-pipe``: commands on fd 3, answers on
fd 4, NUL-separated JSON), so no port, no websocket library and no browser download: only
the Debian ``chromium`` package at /usr/bin/chromium. Without it the tests are skipped —
except under CI (env ``CI`` set), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_perfsig.report.html import write_html_report
from pytest_perfsig.store import SqliteStore
from tests.test_report import (
    XSS,
    add_gate,
    build_pass_gate,
    build_violation_gate,
    build_xss_gate,
    verdict_record,
)

CHROMIUM = Path("/usr/bin/chromium")
RENDER_BUDGET_MS = 1000.0

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytestmark = pytest.mark.skip(reason=f"{CHROMIUM} not installed (apt-get install chromium)")


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium process and its DevTools pipe."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--disable-default-apps",
        "--mute-audio",
        "--hide-scrollbars",
        "--remote-debugging-pipe",
    )

    def __init__(self, user_data_dir: Path, log_path: Path) -> None:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The child needs the pipe ends as fds 3 and 4: move them above both first.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire_fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *self.FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=wire_fds,  # runs in the child before exec; this process starts no threads
            close_fds=False,  # our other fds are non-inheritable; 3 and 4 must survive
        )
        os.close(child_in)
        os.close(child_out)
        self._write = to_browser_w
        self._read = from_browser_r
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.dialogs: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- protocol

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._write, data)
            data = data[written:]
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevToolsError("timed out waiting for the browser")
            ready, _, _ = select.select([self._read], [], [], remaining)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise DevToolsError(f"the browser closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        if message.get("method") == "Page.javascriptDialogOpening":
            # A dialog would block the page: record it, then dismiss it.
            self.dialogs.append(message["params"])
            self.send("Page.handleJavaScriptDialog", {"accept": False}, message.get("sessionId"))
        if "method" in message:
            self.events.append(message)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 15,
    ) -> dict[str, Any]:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def wait_for(self, method: str, session: str, timeout: float = 15) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method and event.get("sessionId") == session:
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
        finally:
            os.close(self._write)
            os.close(self._read)
            self._log.close()

    # ---------------------------------------------------------------- pages

    def open(self, url: str, width: int = 1280, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        first_event = len(self.events)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session, target, first_event)


class Page:
    def __init__(self, browser: Chromium, session: str, target: str, first_event: int) -> None:
        self.browser, self.session, self.target, self.first_event = browser, session, target, first_event

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            self.session,
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw {result['exceptionDetails']}")
        return result["result"].get("value")

    def _events(self) -> list[dict[str, Any]]:
        return [e for e in self.browser.events[self.first_event :] if e.get("sessionId") == self.session]

    def console_errors(self) -> list[str]:
        errors = []
        for event in self._events():
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
                errors.append(json.dumps(params.get("args", []))[:500])
            elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(str(params["entry"].get("text"))[:500])
        return errors

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self._events()
            if e["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: Path) -> Path:
        metrics = self.browser.call("Page.getLayoutMetrics", session=self.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.browser.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            self.session,
            timeout=30,
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: CI must install the Debian package 'chromium'", pytrace=False)
    work = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(work / "profile", work / "chromium.log")
    try:
        chromium.call("Browser.getVersion", timeout=30)
        yield chromium
    finally:
        chromium.close()
        shutil.rmtree(work / "profile", ignore_errors=True)


VISIBLE_JS = """(sel) => Array.from(document.querySelectorAll(sel)).map(e => {
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && s.display !== 'none' && s.visibility !== 'hidden' && Number(s.opacity) > 0;
})"""


def visible(page: Page, selector: str) -> list[bool]:
    result: list[bool] = page.evaluate(f"({VISIBLE_JS})({json.dumps(selector)})")
    return result


def render_times(page: Page) -> tuple[float, float]:
    """(ms from navigation start to the report script's flag, to the load event)."""
    flag = page.evaluate("window.perfsigRendered")
    assert flag is not None, f"the report script did not finish: {page.console_errors()}"
    load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventStart")
    return float(flag), float(load)


def test_report_renders_in_chromium(browser: Chromium, tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "perfsig.db") as store:
        build_pass_gate(store)
        record = verdict_record(
            "ProductionToProductionLastHour::service.responsetime[p90]",
            comparison="ProductionToProductionLastHour",
            source_env="Production",
            source_value=20.0,
            compare_value=19.0,
            limit=22.9,
        )
        add_gate(store, "G-production", [record], status="pass", stage="Production")
        build_violation_gate(store)
        report = write_html_report(store, tmp_path / "report.html")
    url = report.as_uri()
    page = browser.open(url)
    try:
        assert page.evaluate("document.documentElement.getAttribute('data-rendered')") == "1"
        assert page.console_errors() == []
        assert browser.dialogs == []
        # Only the file itself was requested.
        assert page.requests() == [url]
        # Charts: the two timelines (inline SVG from Python) and a history chart per check (script).
        assert page.evaluate("document.querySelectorAll('figure.chart svg').length") == 2
        assert page.evaluate("document.querySelectorAll('#history-charts svg.history-chart').length") == 5
        assert page.evaluate("document.querySelectorAll('svg').length") >= 7
        assert page.evaluate("document.querySelectorAll('#history-charts circle.pt.violation').length") == 1
        # The violation is on screen: the banner and the check's row.
        assert visible(page, '#verdict-banner[data-status="violation"]') == [True]
        assert visible(page, 'tbody.check[data-status="violation"]') == [True]
        assert page.evaluate("document.querySelector('#verdict-banner .verdict').textContent") == "VIOLATION"
        # Filters work client-side.
        page.evaluate(
            "(() => { const s = document.getElementById('filter-failing'); s.checked = true;"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert page.evaluate("document.querySelectorAll('#history-charts .multiple').length") == 1
        page.evaluate(
            "(() => { const s = document.getElementById('filter-env'); s.value = 'Production';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert page.evaluate("document.querySelectorAll('#history-charts .multiple').length") == 0
        page.evaluate(
            "(() => { const s = document.getElementById('filter-failing'); s.checked = false;"
            " s.dispatchEvent(new Event('change')); })()"
        )
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('#history-charts .multiple')).map(e => e.dataset.check)"
        )
        assert shown == ["ProductionToProductionLastHour::service.responsetime[p90]"]
        assert page.evaluate("document.querySelectorAll('#history-gates tr:not([hidden])').length") == 1
        page.evaluate(
            "(() => { const s = document.getElementById('filter-comparison'); s.value = 'StagingToProduction';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert page.evaluate("document.querySelectorAll('#history-charts .multiple').length") == 0
        page.evaluate(
            "(() => { for (const id of ['filter-env', 'filter-comparison']) { const s = document.getElementById(id);"
            " if (s.type === 'checkbox') s.checked = false; else s.value = '';"
            " s.dispatchEvent(new Event('change')); } })()"
        )
        assert page.evaluate("document.querySelectorAll('#history-charts .multiple').length") == 5
        shot = page.screenshot(tmp_path / "report.png")
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        print(f"screenshot: {shot}")
        assert page.console_errors() == []
    finally:
        page.close()


def test_history_of_50_gates_renders_within_a_second(browser: Chromium, tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "perfsig.db") as store:
        build_pass_gate(store, "G-first")
        for n in range(48):
            status = "violation" if n % 7 == 3 else "pass"
            records = [
                verdict_record(
                    f"Cmp{n % 2}::/api/e{k}::servicemethod.responsetime[p90]",
                    comparison=f"Cmp{n % 2}",
                    status=status if k == 0 else "pass",
                    method=f"/api/e{k}",
                    metric="servicemethod.responsetime",
                    source_value=20.0 + n % 5 + k + (30.0 if status == "violation" and k == 0 else 0.0),
                    compare_value=18.0 + k,
                    limit=25.4 + k,
                    source_samples=300,
                    compare_samples=310,
                )
                for k in range(10)
            ]
            add_gate(
                store,
                f"G{n:02d}",
                records,
                status=status,
                stage="Staging" if n % 3 else "Production",
                build=str(n),
            )
        build_violation_gate(store, "G-last")
        report = write_html_report(store, tmp_path / "history.html", history_limit=50)
    page = browser.open(report.as_uri())
    try:
        flag_ms, load_ms = render_times(page)
        print(
            f"50-gate history: script done {flag_ms:.0f} ms, load event {load_ms:.0f} ms after navigation start"
        )
        assert 0 < flag_ms < RENDER_BUDGET_MS and 0 < load_ms < RENDER_BUDGET_MS
        assert page.console_errors() == []
        assert page.evaluate("document.querySelectorAll('#history-gates tr[data-gate]').length") == 50
        charts = page.evaluate("document.querySelectorAll('#history-charts svg.history-chart').length")
        assert charts == 2 * 10 + 2 + 2  # 20 method checks, and those of the first and last gate
        cells = page.evaluate("document.querySelectorAll('#history-charts rect.cell').length")
        assert cells == charts * 50
        page.screenshot(tmp_path / "history.png")
    finally:
        page.close()


def test_xss_corpus_renders_inert(browser: Chromium, tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "perfsig.db") as store:
        build_pass_gate(store)
        build_xss_gate(store)
        report = write_html_report(store, tmp_path / "xss.html")
    dialogs_before = len(browser.dialogs)
    page = browser.open(report.as_uri())
    try:
        assert page.evaluate("document.documentElement.getAttribute('data-rendered')") == "1"
        # Hovering/visiting nothing: scripts of payloads would have run at parse time already.
        time.sleep(0.2)
        assert browser.dialogs[dialogs_before:] == []
        assert page.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
        assert page.evaluate("document.getElementById('pwn')") is None
        assert page.evaluate("document.querySelectorAll('script').length") == 2
        assert page.evaluate("document.querySelectorAll('[onerror], [onload]').length") == 0
        # The payloads are on the page as text, in the server-rendered part and in the script's part.
        text = page.evaluate("document.body.innerText")
        assert XSS[0] in text and XSS[1] in text
        ids = page.evaluate(
            "Array.from(document.querySelectorAll('#history-charts .multiple')).map(e => e.dataset.check)"
        )
        assert any(XSS[2] in check_id for check_id in ids)
        assert page.console_errors() == []
        assert page.requests() == [report.as_uri()]
    finally:
        page.close()
