"""The pack in a real ComfyUI, driven by a real Chromium: tag view, Alt-click exclude, right-click "Tag with JTP",
Prompt Check, save/reload, no console errors from our JS — in the classic renderer and in Nodes 2.0.

Needs (else skipped with a message):
  COMFYUI_DIR            a ComfyUI checkout (its requirements installed in the Python running this test, or in
                         COMFYUI_PYTHON), plus the ``playwright`` package and Debian's chromium (CHROMIUM, default
                         /usr/bin/chromium; no browser download).
  COMFYUI_FRONTEND_ROOT  optional: a newer frontend's ``static`` folder (the unzipped comfyui-frontend-package
                         wheel), started with --front-end-root; Nodes 2.0 is tested only with it.
  JTP_BROWSER_OUT        where screenshots and server logs go (default /tmp/jtp-browser-shots).

The pack is linked into custom_nodes/jtp-tagger for the run; a tiny PILOT-layout checkpoint is written as
JTP_PILOT into a temporary models folder (extra_model_paths), images into a temporary input folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR:
    pytest.skip("COMFYUI_DIR is not set: no real ComfyUI to test in (see this file's docstring)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

OUT = Path(os.environ.get("JTP_BROWSER_OUT", "/tmp/jtp-browser-shots"))
FRONTEND_ROOT = os.environ.get("COMFYUI_FRONTEND_ROOT")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
IMAGE = "jtp_test.png"

# (frontend, renderer): the backend's own frontend in the classic renderer, and a newer one in both renderers
SETUPS = [("pinned", "classic")]
if FRONTEND_ROOT:
    SETUPS += [("new", "classic"), ("new", "vue")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pack_link():
    link = Path(COMFYUI_DIR) / "custom_nodes" / "jtp-tagger"
    created = False
    if link.is_symlink() or link.exists():
        if link.resolve() != ROOT:
            pytest.skip(f"{link} is another copy of the pack ({link.resolve()}); remove it to test this checkout")
    else:
        link.symlink_to(ROOT, target_is_directory=True)
        created = True
    yield link
    if created:
        link.unlink()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    from checkpoints import write_checkpoint
    from PIL import Image, ImageDraw

    base = tmp_path_factory.mktemp("comfy")
    write_checkpoint(base / "models" / "jtp" / "JTP_PILOT", "linear", 16)
    (base / "input").mkdir()
    (base / "output").mkdir()
    (base / "user").mkdir()
    image = Image.new("RGBA", (96, 80), (0, 0, 0, 0))  # transparent around a red disc: the MASK path
    ImageDraw.Draw(image).ellipse((10, 10, 80, 70), fill=(200, 50, 50, 255))
    image.save(base / "input" / IMAGE)
    (base / "extra_model_paths.yaml").write_text(f"jtp_test:\n  base_path: {base}\n  jtp: models/jtp\n")
    OUT.mkdir(parents=True, exist_ok=True)
    return base


_servers: dict[str, tuple[subprocess.Popen, str]] = {}


def _start(frontend: str, workspace: Path) -> str:
    port = _free_port()
    args = [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
            "--input-directory", str(workspace / "input"), "--output-directory", str(workspace / "output"),
            "--user-directory", str(workspace / "user" / frontend),
            "--extra-model-paths-config", str(workspace / "extra_model_paths.yaml")]
    # a fresh user folder would open the templates dialog over the canvas on first start
    settings = workspace / "user" / frontend / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    if frontend == "new":
        args += ["--front-end-root", FRONTEND_ROOT]
    log = open(OUT / f"comfyui-{frontend}.log", "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(args, cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ComfyUI exited with {process.returncode}; see {OUT / f'comfyui-{frontend}.log'}")
        try:
            with urllib.request.urlopen(f"{url}/object_info/JTPPromptCheck", timeout=5) as reply:
                if "JTPPromptCheck" in json.load(reply):
                    _servers[frontend] = (process, url)
                    return url
        except OSError:
            pass
        time.sleep(1)
    process.terminate()
    pytest.fail("ComfyUI did not start (or did not load the pack) within 180 s")


@pytest.fixture(scope="session")
def servers(pack_link, workspace):
    yield lambda frontend: _servers[frontend][1] if frontend in _servers else _start(frontend, workspace)
    for process, _ in _servers.values():
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def browser():
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Page:
    """One ComfyUI page in one renderer, collecting errors that come from our JS."""

    def __init__(self, browser, url: str, frontend: str, renderer: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        origin = url
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        self.page = self.context.new_page()
        self.name = f"{frontend}-{renderer}"
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self._error(f"{error}\n{error.stack or ''}"))
        self.page.on("console", lambda message: message.type == "error" and self._error(
            f"{message.text} @ {message.location.get('url', '')}"))
        self.page.goto(url)
        self.page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90000)
        self.page.wait_for_timeout(1500)
        for _ in range(3):  # any first-start dialog still open
            if not self.page.locator(".p-dialog-mask").count():
                break
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(400)
        self.vue = renderer == "vue"
        has_setting = self.page.evaluate("() => !!app.extensionManager?.setting?.set")
        if has_setting:
            self.page.evaluate("async (on) => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', on)", self.vue)
        elif self.vue:
            pytest.skip("this frontend has no settings API to turn Nodes 2.0 on")
        self.page.wait_for_timeout(800)

    def _error(self, text: str) -> None:
        if "jtp" in text.lower():  # the frontend/backend pairing logs errors of its own; ours name our files
            self.errors.append(text)

    def shot(self, label: str) -> Path:
        path = OUT / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path))
        return path

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def build(self, nodes: str) -> dict:
        """Run graph-building JS with g = the cleared graph and helper add(type, x, y)."""
        return self.js(f"""async () => {{
            const g = app.graph; g.clear();
            const add = (type, x, y) => {{ const n = LiteGraph.createNode(type); n.pos = [x, y]; g.add(n); return n; }};
            const set = (n, name, value) => {{ const w = n.widgets.find(w => w.name === name); w.value = value;
                                               w.callback?.(value); }};
            {nodes}
            app.canvas.setDirty(true, true);
        }}""")

    def run_and_wait(self, selector: str, count_before: int = -1) -> None:
        self.js("""async () => {
            window.__jtpExecuted = 0;
            const { api } = await import('/scripts/api.js');
            api.addEventListener('executing', (e) => { if (e.detail === null) window.__jtpExecuted++; });
            api.addEventListener('execution_success', () => window.__jtpExecuted++);
            await app.queuePrompt(0);
        }""")
        self.page.wait_for_function("window.__jtpExecuted > 0", timeout=120000)
        self.page.wait_for_selector(selector, timeout=30000)
        self.page.wait_for_timeout(400)

    def screen_point_of_node(self, node_id: int) -> tuple[float, float]:
        if self.vue:
            box = self.page.locator(f'[data-node-id="{node_id}"]').bounding_box()
            return box["x"] + box["width"] / 2, box["y"] + 14
        return tuple(self.js("""(id) => {
            const n = app.graph.getNodeById(id); const r = app.canvas.canvas.getBoundingClientRect();
            const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + 60, n.pos[1] - 14]);
            return [r.left + x, r.top + y]; }""", node_id))

    def close(self) -> None:
        self.context.close()


@pytest.fixture(params=SETUPS, ids=[f"{f}-{r}" for f, r in SETUPS])
def ui(request, servers, browser):
    frontend, renderer = request.param
    page = Page(browser, servers(frontend), frontend, renderer)
    yield page
    page.shot("end")
    page.close()
    assert not page.errors, "errors from the pack's JS:\n" + "\n".join(page.errors)


TAGGER_GRAPH = f"""
    const load = add("LoadImage", 40, 80); set(load, "image", "{IMAGE}");
    const loader = add("JTPModelLoader", 40, 480);
    const tagger = add("JTPTagger", 420, 80);
    loader.connect(0, tagger, 0); load.connect(0, tagger, 1); load.connect(1, tagger, 2);
"""


def _chip_tags(ui: Page) -> list[str]:
    return ui.js("() => [...document.querySelectorAll('.jtp-view .jtp-chip')].map(c => c.dataset.tag)")


def test_tag_view_shows_chips_and_alt_click_excludes_for_the_next_run(ui):
    ui.build(TAGGER_GRAPH + """
        const repeat = add("RepeatImageBatch", 40, 700); set(repeat, "amount", 2);
        load.connect(0, repeat, 0); repeat.connect(0, tagger, 1);
    """)
    ui.run_and_wait(".jtp-view .jtp-chip")
    heads = ui.js("() => [...document.querySelectorAll('.jtp-view .jtp-block-head')].map(h => h.textContent)")
    assert heads == ["Image 1 of 2", "Image 2 of 2"]  # one block per image of the batch
    tags = _chip_tags(ui)[: len(_chip_tags(ui)) // 2]
    assert len(tags) >= 3, tags
    scores = ui.js("() => [...document.querySelector('.jtp-view .jtp-block').querySelectorAll('.jtp-score')]"
                   ".map(s => +s.textContent)")
    assert scores == sorted(scores, reverse=True), "chips are not ordered by score"
    ui.shot("tag-view")

    victim = tags[0]
    ui.page.locator(f'.jtp-view .jtp-chip[data-tag="{victim}"]').first.click(modifiers=["Alt"])
    exclude = ui.js("() => app.graph._nodes.find(n => n.type === 'JTPTagger').widgets"
                    ".find(w => w.name === 'exclude_tags').value")
    assert victim in exclude

    ui.run_and_wait(".jtp-view .jtp-chip")
    ui.page.wait_for_function(f"() => ![...document.querySelectorAll('.jtp-view .jtp-chip')]"
                              f".some(c => c.dataset.tag === {json.dumps(victim)})", timeout=30000)
    assert victim not in _chip_tags(ui) and len(_chip_tags(ui)) == 2 * (len(tags) - 1)
    ui.page.locator(".jtp-view .jtp-bar button", has_text="Prompt").click()  # the toggle to the prompt string
    prompt = ui.js("() => document.querySelector('.jtp-view .jtp-prompt').textContent")
    assert prompt and victim.replace("_", " ") not in prompt
    ui.shot("tag-view-after-exclude")


def test_right_click_tag_with_jtp_on_load_image(ui):
    ui.build(f"""
        const load = add("LoadImage", 40, 80); set(load, "image", "{IMAGE}");
        add("CLIPTextEncode", 520, 80);
    """)
    has_hook = ui.js("() => typeof app.collectNodeMenuItems === 'function'")
    if not has_hook:
        pytest.skip("this frontend has no getNodeMenuItems hook (the menu item needs a newer frontend)")
    ui.page.wait_for_timeout(800)
    x, y = ui.screen_point_of_node(1)
    ui.page.mouse.click(x, y, button="right")
    item = ui.page.get_by_text("Tag with JTP", exact=True)
    item.first.wait_for(timeout=10000)
    ui.shot("menu")
    item.first.click()
    ui.page.wait_for_selector("#jtp-tag-dialog .jtp-chip", timeout=60000)
    ui.shot("dialog")
    text = ui.js("() => document.querySelector('#jtp-tag-dialog .jtp-prompt').textContent")
    assert text.count(",") >= 2

    ui.page.locator("#jtp-tag-dialog .jtp-copy").click()
    ui.page.wait_for_function("() => document.querySelector('#jtp-tag-dialog .jtp-status').textContent === 'Copied'")
    assert ui.js("() => navigator.clipboard.readText()") == text
    ui.page.locator("#jtp-tag-dialog .jtp-send").click()
    sent = ui.js("() => app.graph._nodes.find(n => n.type === 'CLIPTextEncode').widgets"
                 ".find(w => w.name === 'text').value")
    assert sent == text


def test_prompt_check_shows_the_check_and_the_best_image(ui):
    ui.build(f"""
        const load = add("LoadImage", 40, 80); set(load, "image", "{IMAGE}");
        const loader = add("JTPModelLoader", 40, 480);
        const check = add("JTPPromptCheck", 420, 80);
        set(check, "prompt", "female, (solo:1.2), blue_eyes, not a real tag");
        set(check, "negative_prompt", "male");
        loader.connect(0, check, 0); load.connect(0, check, 1);
        const preview = add("PreviewImage", 900, 80); check.connect(0, preview, 0);
    """)
    ui.run_and_wait(".jtp-view .jtp-meter")
    head = ui.js("() => document.querySelector('.jtp-view .jtp-block-head').textContent")
    assert "best" in head and "%" in head
    unknown = ui.js("() => [...document.querySelectorAll('.jtp-view .jtp-unknown')].map(c => c.dataset.tag)")
    assert unknown == ["not a real tag"]
    ui.shot("prompt-check")


def test_saved_and_reloaded_workflow_keeps_every_widget_value(ui):
    ui.build(TAGGER_GRAPH + """
        set(tagger, "threshold", 0.35); set(tagger, "exclude_tags", "solo, *_background");
        set(tagger, "trigger_words", "mytrigger"); set(tagger, "order", "alphabetical");
        const check = add("JTPPromptCheck", 900, 80); set(check, "prompt", "female, (solo:1.2)");
        set(check, "negative_prompt", "male"); set(check, "negative_penalty", 0.5);
        loader.connect(0, check, 0); load.connect(0, check, 1);
    """)
    before = ui.js("() => JSON.stringify(app.graph.serialize())")
    ui.js("async (data) => { await app.loadGraphData(JSON.parse(data)); }", before)
    ui.page.wait_for_timeout(800)
    after = json.loads(ui.js("() => JSON.stringify(app.graph.serialize())"))
    saved = {node["type"]: node["widgets_values"] for node in json.loads(before)["nodes"]}
    reloaded = {node["type"]: node["widgets_values"] for node in after["nodes"]}
    assert reloaded == saved
    values = {w: v for w, v in ui.js("""() => app.graph._nodes.find(n => n.type === 'JTPTagger').widgets
        .filter(w => w.serialize !== false).map(w => [w.name, w.value])""")}
    assert values["threshold"] == pytest.approx(0.35) and values["exclude_tags"] == "solo, *_background"
    assert values["order"] == "alphabetical" and values["trigger_words"] == "mytrigger"
    # the views are not saved: widgets_values hold INPUT_TYPES' widgets only
    widget_names = ui.js("""() => app.graph._nodes.find(n => n.type === 'JTPTagger').widgets
        .filter(w => w.serialize !== false).map(w => w.name)""")
    assert "jtp_tag_view" not in widget_names and len(saved["JTPTagger"]) == len(widget_names), saved["JTPTagger"]
    assert widget_names[:3] == ["threshold", "max_tags", "exclude_tags"]
    check_values = saved["JTPPromptCheck"]
    assert "female, (solo:1.2)" in check_values and "male" in check_values and 0.5 in check_values


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "example_workflows").glob("*.json")))
def test_example_workflow_loads_with_its_widget_values(ui, name):
    workflow = json.loads((ROOT / "example_workflows" / name).read_text(encoding="utf-8"))
    ui.js("async (data) => { await app.loadGraphData(data); }", workflow)
    ui.page.wait_for_timeout(600)
    loaded = ui.js("""() => Object.fromEntries(app.graph._nodes.map(n => [n.id, {type: n.type,
        values: (n.widgets ?? []).filter(w => w.serialize !== false).map(w => w.value)}]))""")
    for node in workflow["nodes"]:
        if not node["type"].startswith("JTP"):
            continue
        got = loaded[str(node["id"])]
        assert got["type"] == node["type"]
        assert got["values"] == pytest.approx(node["widgets_values"]), f"{name}: {node['type']}"
    ui.shot(f"example-{name.removesuffix('.json')}")


def test_right_click_tag_with_jtp_on_a_preview_image(ui):
    """An output image (type temp, known from the node's own preview) — not only LoadImage's input file."""
    if not ui.js("() => typeof app.collectNodeMenuItems === 'function'"):
        pytest.skip("this frontend has no getNodeMenuItems hook (the menu item needs a newer frontend)")
    ui.build(f"""
        const load = add("LoadImage", 40, 80); set(load, "image", "{IMAGE}");
        const preview = add("PreviewImage", 420, 80); load.connect(0, preview, 0);
    """)
    ui.run_and_wait(".jtp-view, canvas")  # PreviewImage shows its image once the prompt ran
    ui.page.wait_for_function("() => (app.nodeOutputs?.['2']?.images?.length ?? 0) > 0"
                              " || (app.graph.getNodeById(2).imgs?.length ?? 0) > 0", timeout=30000)
    found = ui.js("async () => (await import('/extensions/jtp-tagger/jtp_tag_view.js'))"
                  ".imageOfNode(app.graph.getNodeById(2))")
    assert found and found["type"] == "temp", found
    x, y = ui.screen_point_of_node(2)
    ui.page.mouse.click(x, y, button="right")
    item = ui.page.get_by_text("Tag with JTP", exact=True)
    item.first.wait_for(timeout=10000)
    item.first.click()
    ui.page.wait_for_selector("#jtp-tag-dialog .jtp-chip", timeout=60000)
    ui.shot("dialog-preview-image")
