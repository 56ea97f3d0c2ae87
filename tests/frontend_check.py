"""Load UI-format workflows in the REAL ComfyUI web frontend (headless Chromium) and report what it says.

Used by the opt-in ``tests/test_frontend_workflows.py`` (marker ``comfyui``); reusable on its own against
any running ComfyUI server::

    with FrontendSession(server.url) as fe:
        result = fe.check_workflow(json.loads(Path("workflows/cosmos3_t2v.json").read_text()),
                                   name="cosmos3_t2v.json", screenshot=tmp_path / "t2v.png")
        print(result.summary())

What one :meth:`FrontendSession.check_workflow` does:

1. opens the frontend page (a fresh page load per workflow, so every result only holds its own messages)
   and waits until ``window.app`` (ComfyUI's app object), its graph, its canvas and ``window.LiteGraph``
   exist and the start-up workflow restore has settled;
2. loads the workflow through the frontend's own loading path, ``app.loadGraphData(workflow, true, true,
   name)`` — the call the frontend makes when a ``.json`` file is opened or dropped (same signature in the
   1.27.x frontend bundled with ComfyUI 0.3.64 and in the 1.5x frontends: validation against the zod
   schema, missing node / model / media detection, ``graph.configure``, extension hooks);
3. collects:

   * ``console`` — console errors/warnings and uncaught exceptions / unhandled rejections (an init script
     hooks them before any page script runs; Chromium's own log adds failed network loads, and requests to
     external hosts that the browser refused to resolve as kind ``blocked``), each tagged with the phase it
     happened in (``page`` = start-up, ``load`` = while/after our workflow was loaded);
   * ``messages`` — the text of every toast / dialog / alert the frontend showed after the load call
     (a MutationObserver records them as they appear, so auto-dismissed toasts are not lost), e.g. the
     missing-nodes dialog, ``Invalid workflow against zod schema``, missing models / inputs; where the 1.5x
     error overlay ("N issues found") appears, its "View details" panel is opened (after the screenshot) and
     each of its groups is added as ``Errors panel: …``;
   * ``unknown_types`` — node types of the workflow that the frontend has not registered (a missing type
     loads as a placeholder whose type is not registered either);
   * ``error_nodes`` — registered nodes the frontend flagged ``has_errors`` after the load (the 1.5x
     frontends flag a node whose model file or input media is missing);
   * ``widget_diffs`` — for each of OUR nodes (type ``C3MoT*``) every slot where the widget values after
     the load differ from ``widgets_values`` in the JSON (same order: the widgets the frontend fills from
     ``widgets_values``, i.e. those with ``serialize !== false``), and ``resave_diffs`` — the same against
     ``node.serialize().widgets_values`` (what saving the workflow again writes);

4. saves a PNG screenshot of the page.

The browser runs with ``--headless=new --no-sandbox`` and resolves no host other than loopback
(``--host-resolver-rules``), so the frontend's calls to external services fail fast instead of leaving the
machine. :meth:`FrontendSession.close` always quits the browser and, if needed, kills chromedriver.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMEDRIVER = os.environ.get("C3MOT_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("C3MOT_CHROMIUM", "/usr/bin/chromium")
OUR_PREFIX = "C3MoT"
OUR_MARKERS = ("C3MoT", "cosmos3-mot", "cosmos3_mot", "/extensions/cosmos3")  # text that ties a message to us

# Selectors of the frontend's toasts and dialogs: PrimeVue (1.2x), reka-ui / vue-sonner (1.5x), plain ARIA.
MESSAGE_SELECTORS = (".p-toast-message, .p-dialog, .p-confirm-dialog, [data-sonner-toast], [role='dialog'], "
                     "[role='alertdialog'], [role='alert'], .comfy-modal, [data-testid='error-overlay']")
# 1.5x: the error overlay ("N issues found") only counts; its "View details" button opens the errors panel,
# whose groups (missing nodes / models / media) name what is wrong.
ERROR_DETAILS_BUTTON = "[data-testid='error-overlay-see-errors']"
ERROR_DETAILS_GROUPS = "[data-testid^='error-group-']:not([data-testid='error-group-display-message'])"

DETAILS_SCRIPT = r"""
const [button] = arguments;
const b = document.querySelector(button);
if (!b) return null;
b.click();
return true;
"""

DETAILS_COLLECT_SCRIPT = r"""
const [groups] = arguments;
return Array.from(document.querySelectorAll(groups)).map((e) => (e.innerText || '').trim()).filter((t) => t);
"""

# Injected before any page script (CDP Page.addScriptToEvaluateOnNewDocument).
INIT_SCRIPT = r"""
(() => {
  if (window.__c3mot) return;
  const S = window.__c3mot = {phase: 'page', console: [], messages: [], seen: new Set()};
  const text = (v) => {
    try {
      if (v instanceof Error) return (v.stack || (v.name + ': ' + v.message));
      if (typeof v === 'string') return v;
      return JSON.stringify(v);
    } catch (e) { return String(v); }
  };
  const push = (kind, args) => {
    try { S.console.push({kind, phase: S.phase, text: Array.from(args).map(text).join(' ').slice(0, 4000)}); }
    catch (e) {}
  };
  for (const level of ['error', 'warn']) {
    const orig = console[level].bind(console);
    console[level] = function (...args) { push(level, args); return orig(...args); };
  }
  window.addEventListener('error', (ev) => {
    push('exception', [ev.error || (ev.message + ' @ ' + ev.filename + ':' + ev.lineno)]);
  });
  window.addEventListener('unhandledrejection', (ev) => push('unhandledrejection', [ev.reason]));
  const SEL = %SELECTORS%;
  const byElement = new WeakMap();  // element -> text last recorded (a lingering toast is not re-attributed)
  const record = (el) => {
    const t = (el.innerText || el.textContent || '').trim().replace(/\s+\n/g, '\n');
    if (!t || byElement.get(el) === t) return;
    byElement.set(el, t);
    const key = S.phase + '|' + t;
    if (S.seen.has(key)) return;
    S.seen.add(key);
    S.messages.push({phase: S.phase, text: t.slice(0, 4000)});
  };
  S.scan = () => { document.querySelectorAll(SEL).forEach(record); };
  const start = () => {
    new MutationObserver((muts) => {
      for (const m of muts) for (const n of m.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.matches && n.matches(SEL)) record(n);
        if (n.querySelectorAll) n.querySelectorAll(SEL).forEach(record);
      }
      // content of an already inserted toast/dialog may be filled in later
      setTimeout(S.scan, 50);
    }).observe(document.documentElement, {childList: true, subtree: true});
  };
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
""".replace("%SELECTORS%", json.dumps(MESSAGE_SELECTORS))

READY_SCRIPT = r"""
const app = window.app;
if (!app || !window.LiteGraph) return {ready: false};
const graph = app.rootGraph || app.graph;
if (!graph || !app.canvas) return {ready: false};
let active = null;
try { const wf = app.extensionManager && app.extensionManager.workflow; active = wf ? !!wf.activeWorkflow : null; }
catch (e) { active = null; }
const nodes = graph.nodes || graph._nodes || [];
return {ready: true, active, nodes: nodes.length};
"""

LOAD_SCRIPT = r"""
const [workflow, name, done] = arguments;
const S = window.__c3mot;
S.scan();  // what is on screen before the load stays in the 'page' phase
S.phase = 'load';
S.messages = S.messages.filter((m) => m.phase !== 'load');
let settled = false;
const finish = (r) => { if (!settled) { settled = true; done(r); } };
try {
  Promise.resolve(window.app.loadGraphData(workflow, true, true, name)).then(
    (r) => finish({ok: r !== false, returned: r === undefined ? null : String(r)}),
    (e) => finish({ok: false, error: String((e && e.stack) || e)}));
} catch (e) { finish({ok: false, error: String((e && e.stack) || e)}); }
"""

# Fixed UI chrome over the canvas whose area the saved view must leave free (1.27 and 1.5x class names).
CHROME_SELECTORS = (".side-tool-bar-container, .comfyui-menu, .workflow-tabs-container, .actionbar, "
                    "[data-testid='side-toolbar'], .side-bar-panel, .graph-canvas-menu, .topbar")

COLLECT_SCRIPT = r"""
const [types, CHROME] = arguments;
const S = window.__c3mot;
S.scan();
const app = window.app, LG = window.LiteGraph;
const graph = app.rootGraph || app.graph;
const safe = (v) => {
  try { return v === undefined ? null : JSON.parse(JSON.stringify(v)); } catch (e) { return String(v); }
};
const registered = LG.registered_node_types || {};
const nodes = (graph.nodes || graph._nodes || []).map((n) => {
  let serialized = null, serializeError = null;
  try { serialized = safe(n.serialize().widgets_values); } catch (e) { serializeError = String(e); }
  let computed = null;
  try { computed = n.computeSize(); } catch (e) { computed = null; }
  return {
    id: n.id, type: n.type, title: n.title, registered: n.type in registered, has_errors: !!n.has_errors,
    pos: safe(Array.from(n.pos)), size: safe(Array.from(n.size)), computed_size: computed && safe(Array.from(computed)),
    widgets: (n.widgets || []).map((w) => ({name: w.name, type: w.type, value: safe(w.value),
                                             serialize: w.serialize !== false})),
    serialized, serialize_error: serializeError,
  };
});
let version = window.__COMFYUI_FRONTEND_VERSION__ || null;
return {
  nodes, version,
  unregistered: types.filter((t) => !(t in registered)),
  console: S.console, messages: S.messages,
  canvas: {
    scale: app.canvas.ds ? app.canvas.ds.scale : null,
    offset: app.canvas.ds ? safe(app.canvas.ds.offset) : null,
    rect: (() => { const r = app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })(),
  },
  title_height: LG.NODE_TITLE_HEIGHT,
  groups: (graph.groups || graph._groups || []).map(
    (g) => ({title: g.title, bounding: safe(Array.from(g._bounding || g.bounding || []))})),
  // UI chrome drawn over the canvas (1.5x: side toolbar, top menu / tabs; 1.27: side bar, top menu)
  chrome: Array.from(document.querySelectorAll(CHROME)).filter((e) => e.offsetParent !== null).map((e) => {
    const r = e.getBoundingClientRect();
    const what = (e.className && String(e.className).slice(0, 80)) || e.tagName;
    return {what, rect: [r.left, r.top, r.right, r.bottom]};
  }).filter((c) => c.rect[2] - c.rect[0] > 0 && c.rect[3] - c.rect[1] > 0),
};
"""


@dataclass
class WidgetDiff:
    node_id: Any
    node_type: str
    slot: int
    name: str | None
    expected: Any
    actual: Any
    note: str = ""

    def __str__(self) -> str:
        where = f"#{self.node_id} {self.node_type} slot {self.slot}" + (f" ({self.name})" if self.name else "")
        return f"{where}: expected {self.expected!r}, got {self.actual!r}" + (f" [{self.note}]" if self.note else "")


@dataclass
class FrontendResult:
    name: str
    url: str
    frontend_version: str | None = None
    load_ok: bool = False
    load_error: str | None = None
    console: list[dict] = field(default_factory=list)  # {kind, phase, text}
    messages: list[dict] = field(default_factory=list)  # {phase, text}: toasts / dialogs / alerts
    unknown_types: list[str] = field(default_factory=list)
    # registered nodes the frontend marked ``has_errors`` (1.5x: missing model / media on the node): {id, type, text}
    error_nodes: list[dict] = field(default_factory=list)
    widget_diffs: list[WidgetDiff] = field(default_factory=list)
    resave_diffs: list[WidgetDiff] = field(default_factory=list)
    our_nodes: int = 0
    loaded_nodes: int = 0
    expected_nodes: int = 0
    screenshot: Path | None = None
    seconds: float = 0.0
    nodes: list[dict] = field(default_factory=list)  # raw per-node data from the page (pos, size, computed_size)
    # the view after the load: scale, offset, canvas rect, title_height, groups, chrome (rects of UI over the canvas)
    canvas: dict = field(default_factory=dict)

    @property
    def exceptions(self) -> list[dict]:
        """Uncaught exceptions, unhandled rejections and console errors (any phase)."""
        return [c for c in self.console if c["kind"] in ("exception", "unhandledrejection", "error", "SEVERE")]

    @property
    def load_messages(self) -> list[str]:
        return [m["text"] for m in self.messages if m["phase"] == "load"]

    def ours(self, entries: list[dict]) -> list[dict]:
        return [e for e in entries if any(marker in e["text"] for marker in OUR_MARKERS)]

    def summary(self) -> str:
        head = (
            f"{self.name} @ frontend {self.frontend_version or '?'}: load_ok={self.load_ok} "
            f"nodes {self.loaded_nodes}/{self.expected_nodes} (ours {self.our_nodes}) "
            f"unknown={self.unknown_types} error_nodes={len(self.error_nodes)} "
            f"widget_diffs={len(self.widget_diffs)} resave_diffs={len(self.resave_diffs)} "
            f"console_errors={len(self.exceptions)} messages={len(self.load_messages)} "
            f"({self.seconds:.1f} s) screenshot={self.screenshot}"
        )
        lines = [head]
        if self.load_error:
            lines.append(f"  load error: {self.load_error}")
        lines += [f"  error node: {n['text']}" for n in self.error_nodes]
        lines += [f"  widget diff: {d}" for d in self.widget_diffs]
        lines += [f"  resave diff: {d}" for d in self.resave_diffs]
        lines += [f"  message: {_one_line(m)}" for m in self.load_messages]
        lines += [f"  console {c['kind']} [{c['phase']}]: {_one_line(c['text'])}" for c in self.exceptions]
        return "\n".join(lines)

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("widget_diffs", "resave_diffs", "screenshot")}
        d["widget_diffs"] = [x.__dict__ for x in self.widget_diffs]
        d["resave_diffs"] = [x.__dict__ for x in self.resave_diffs]
        d["screenshot"] = str(self.screenshot) if self.screenshot else None
        return d


def _one_line(text: str, limit: int = 400) -> str:
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit] + "…"


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_same(a, b) for a, b in zip(expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(_same(expected[k], actual[k]) for k in expected)
    return expected == actual


def compare_widgets(
    workflow: dict, loaded_nodes: list[dict], prefix: str = OUR_PREFIX
) -> tuple[list[WidgetDiff], list[WidgetDiff], int]:
    """(after-load diffs, re-save diffs, number of our nodes) for the nodes whose type starts with ``prefix``.

    After load: the widgets with ``serialize !== false``, in order, are what ``LGraphNode.configure`` fills
    from ``widgets_values`` — slot ``i`` of the JSON against the ``i``-th of them. Re-save: slot ``i`` against
    ``node.serialize().widgets_values[i]``. A slot present on one side only is reported with ``<missing>``.
    """
    by_id = {str(n["id"]): n for n in loaded_nodes}
    after, resave, count = [], [], 0
    for node in workflow.get("nodes", []):
        kind = node.get("type", "")
        if not kind.startswith(prefix):
            continue
        count += 1
        expected = node.get("widgets_values")
        if isinstance(expected, dict):  # some nodes save a dict; compare by name
            expected_pairs = list(expected.items())
        else:
            expected_pairs = [(None, v) for v in (expected or [])]
        loaded = by_id.get(str(node.get("id")))
        if loaded is None:
            after.append(WidgetDiff(node.get("id"), kind, -1, None, "node", "<missing>", "node not in loaded graph"))
            continue
        widgets = [w for w in loaded["widgets"] if w["serialize"]]
        if isinstance(expected, dict):
            values = {w["name"]: w["value"] for w in widgets}
            for slot, (name, value) in enumerate(expected_pairs):
                actual = values.get(name, "<missing>")
                if not _same(value, actual):
                    after.append(WidgetDiff(node["id"], kind, slot, name, value, actual))
            continue
        for slot in range(max(len(expected_pairs), len(widgets))):
            exp = expected_pairs[slot][1] if slot < len(expected_pairs) else "<missing>"
            act = widgets[slot]["value"] if slot < len(widgets) else "<missing>"
            name = widgets[slot]["name"] if slot < len(widgets) else None
            if not _same(exp, act):
                note = (
                    "no widget for this slot"
                    if act == "<missing>"
                    else ("widget not in the JSON" if exp == "<missing>" else "")
                )
                after.append(WidgetDiff(node["id"], kind, slot, name, exp, act, note))
        saved = loaded.get("serialized")
        if saved is None and loaded.get("serialize_error"):
            resave.append(WidgetDiff(node["id"], kind, -1, None, "serialize()", loaded["serialize_error"]))
            continue
        saved = saved or []
        names = [w["name"] for w in loaded["widgets"]]
        for slot in range(max(len(expected_pairs), len(saved))):
            exp = expected_pairs[slot][1] if slot < len(expected_pairs) else "<missing>"
            act = saved[slot] if slot < len(saved) else "<missing>"
            if not _same(exp, act):
                resave.append(WidgetDiff(node["id"], kind, slot, names[slot] if slot < len(names) else None, exp, act))
    return after, resave, count


def static_frontend_version(static_dir: Path | str) -> str | None:
    """Version of an unpacked ``comfyui_frontend_package`` wheel, from the ``*.dist-info`` next to the package."""
    pkg = Path(static_dir).resolve().parent
    for meta in sorted(pkg.parent.glob("comfyui_frontend_package-*.dist-info/METADATA")):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def write_frontend_settings(user_dir: Path | str, extra: dict | None = None) -> Path:
    """``<user_dir>/default/comfy.settings.json`` so the frontend starts as a returning user (no first-run
    template browser covering the canvas). Merged into an existing file."""
    path = Path(user_dir) / "default" / "comfy.settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = json.loads(path.read_text()) if path.exists() else {}
    settings["Comfy.TutorialCompleted"] = True
    settings.update(extra or {})
    path.write_text(json.dumps(settings, indent=1))
    return path


def browser_available() -> str | None:
    """None when selenium, chromium and chromedriver are all there; else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not importable (pip install selenium)"
    for label, path in (("chromedriver", CHROMEDRIVER), ("chromium", CHROMIUM)):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{label} not found at {path} (apt-get install chromium chromium-driver)"
    return None


class FrontendSession:
    """One headless Chromium (via chromedriver) pointed at a ComfyUI server; reused for many workflows."""

    def __init__(
        self,
        url: str,
        *,
        width: int = 1600,
        height: int = 1000,
        ready_timeout: float = 90.0,
        load_timeout: float = 60.0,
        settle: float = 2.0,
        frontend_version: str | None = None,
    ):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.url = url.rstrip("/") + "/"
        self.ready_timeout, self.load_timeout, self.settle = ready_timeout, load_timeout, settle
        self.frontend_version = frontend_version
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--metrics-recording-only",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self._service = Service(CHROMEDRIVER)
        self.driver = webdriver.Chrome(service=self._service, options=options)
        try:
            self.driver.set_page_load_timeout(load_timeout)
            self.driver.set_script_timeout(load_timeout)
            self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INIT_SCRIPT})
            self.browser_version = self.driver.capabilities.get("browserVersion")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> FrontendSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        driver, self.driver = getattr(self, "driver", None), None
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # noqa: BLE001, S110 -- best effort; chromedriver is killed below if it survived
                pass
        proc = getattr(getattr(self, "_service", None), "process", None)
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            except (ProcessLookupError, OSError):
                pass

    # -- page ------------------------------------------------------------------------------------------------
    def open(self) -> dict:
        """Load the page and wait until the app is ready and its start-up workflow restore has settled.

        The origin's local/session storage is cleared first, so the frontend does not restore the workflow
        of the previous check (every page starts from the frontend's default graph)."""
        origin = "/".join(self.url.split("/")[:3])
        try:
            self.driver.execute_cdp_cmd(
                "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "local_storage,session_storage"}
            )
        except Exception:  # noqa: BLE001, S110 -- an older driver without the CDP call: keep the storage
            pass
        self.driver.get(self.url)
        deadline = time.monotonic() + self.ready_timeout
        state, stable_since, last = {"ready": False}, None, None
        while time.monotonic() < deadline:
            state = self.driver.execute_script(READY_SCRIPT) or {"ready": False}
            if state.get("ready"):
                key = (state.get("active"), state.get("nodes"))
                if key != last:
                    last, stable_since = key, time.monotonic()
                # an active workflow means the start-up restore ran; otherwise wait for the graph to be stable
                needed = 0.5 if state.get("active") else 3.0
                if time.monotonic() - stable_since >= needed:
                    return state
            time.sleep(0.25)
        raise TimeoutError(f"the frontend at {self.url} was not ready within {self.ready_timeout:.0f} s: {state}")

    def browser_log(self, phase: str) -> list[dict]:
        """Chromium's own log since the last call: failed loads and the like (``SEVERE`` / ``WARNING``).
        Console-API entries are left out: the init script already recorded them."""
        try:
            entries = self.driver.get_log("browser")
        except Exception:  # noqa: BLE001 -- a driver without the log endpoint: the init script's record remains
            return []
        out = []
        for e in entries:
            if e.get("level") not in ("SEVERE", "WARNING") or e.get("source") == "console-api":
                continue
            text = e.get("message", "")
            # a request to a non-loopback host that --host-resolver-rules stopped (registry / model lookups)
            kind = "blocked" if "ERR_NAME_NOT_RESOLVED" in text else e["level"]
            out.append({"kind": kind, "phase": phase, "text": text})
        return out

    def check_workflow(
        self, workflow: dict | str | Path, *, name: str | None = None, screenshot: Path | str | None = None
    ) -> FrontendResult:
        if isinstance(workflow, (str, Path)):
            name = name or Path(workflow).name
            workflow = json.loads(Path(workflow).read_text())
        name = name or "workflow.json"
        started = time.monotonic()
        result = FrontendResult(name=name, url=self.url, frontend_version=self.frontend_version)
        result.expected_nodes = len(workflow.get("nodes", []))
        self.open()
        startup_log = self.browser_log("page")
        outcome = self.driver.execute_async_script(LOAD_SCRIPT, workflow, name) or {}
        result.load_ok = bool(outcome.get("ok"))
        result.load_error = outcome.get("error")
        time.sleep(self.settle)  # toasts, dialogs, the next animation frames
        types = sorted({n.get("type") for n in workflow.get("nodes", []) if n.get("type")})
        data = self.driver.execute_script(COLLECT_SCRIPT, types, CHROME_SELECTORS)
        result.canvas = dict(data.get("canvas") or {}, title_height=data.get("title_height"),
                             groups=data.get("groups") or [], chrome=data.get("chrome") or [])
        result.frontend_version = data.get("version") or result.frontend_version
        result.nodes = data["nodes"]
        result.loaded_nodes = len(data["nodes"])
        result.console = list(data["console"]) + startup_log + self.browser_log("load")
        result.messages = list(data["messages"])
        placeholders = {n["type"] for n in data["nodes"] if not n["registered"]}  # missing types load as these
        result.unknown_types = sorted(set(data["unregistered"]) | placeholders)
        result.error_nodes = [
            {
                "id": n["id"],
                "type": n["type"],
                "text": f"{n['type']} #{n['id']} flagged with errors by the frontend (widgets: "
                + ", ".join(f"{w['name']}={w['value']!r}" for w in n["widgets"])
                + ")",
            }
            for n in data["nodes"]
            if n["has_errors"] and n["registered"]
        ]
        result.widget_diffs, result.resave_diffs, result.our_nodes = compare_widgets(workflow, data["nodes"])
        if screenshot is not None:  # the graph as loaded, before any details panel is opened
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(screenshot))
            result.screenshot = screenshot
        if self.driver.execute_script(DETAILS_SCRIPT, ERROR_DETAILS_BUTTON):
            time.sleep(1.5)
            for text in self.driver.execute_script(DETAILS_COLLECT_SCRIPT, ERROR_DETAILS_GROUPS) or []:
                result.messages.append({"phase": "load", "text": "Errors panel: " + text})
        result.seconds = time.monotonic() - started
        return result
