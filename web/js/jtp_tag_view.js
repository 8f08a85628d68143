// JTP in the ComfyUI page: the tag view on JTP Tagger, the check view on JTP Prompt Check, and the right-click
// "Tag with JTP" on any node that shows an image.
//
// Only DOM widgets (node.addDOMWidget) and page elements: nothing is drawn on the canvas, so it works in the
// classic LiteGraph renderer and in Nodes 2.0 (Vue). The views are display only (serialize: false): saved
// workflows keep the widget order of INPUT_TYPES. The menu item uses the getNodeMenuItems extension hook
// (frontends that lack it simply show no item; we do not patch getExtraMenuOptions).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TAGGER = "JTPTagger";
const CHECK = "JTPPromptCheck";
const LOADER = "JTPModelLoader";
const TAG_VIEW = "jtp_tag_view";
const CHECK_VIEW = "jtp_check_view";
// e621's category colours
const CATEGORY_COLOURS = {
  general: "#b4c7d9", artist: "#f2ac08", contributor: "#c0c0c0", copyright: "#dd00dd", character: "#00aa00",
  species: "#ed5d1f", invalid: "#ff3d3d", meta: "#eeeeee", lore: "#228822",
};

const STYLE = `
.jtp-view { font: 12px sans-serif; color: var(--input-text, #ddd); overflow-y: auto; box-sizing: border-box;
  padding: 4px; background: var(--comfy-input-bg, #222); border-radius: 6px; width: 100%; height: 100%; }
.jtp-bar { display: flex; gap: 4px; align-items: center; margin-bottom: 4px; flex-wrap: wrap; }
.jtp-bar button, .jtp-dialog button, .jtp-dialog select { font: 11px sans-serif; padding: 2px 6px; cursor: pointer;
  background: var(--comfy-menu-bg, #333); color: inherit; border: 1px solid #555; border-radius: 4px; }
.jtp-bar button.jtp-on { border-color: #8ab4f8; color: #8ab4f8; }
.jtp-hint { opacity: .6; font-size: 11px; }
.jtp-block { margin: 4px 0 8px; }
.jtp-block-head { font-weight: bold; margin-bottom: 3px; }
.jtp-chips { display: flex; flex-wrap: wrap; gap: 3px; }
.jtp-chip { position: relative; display: inline-flex; align-items: center; gap: 4px; padding: 1px 6px 3px;
  border-radius: 4px; border: 1px solid #555; border-left: 4px solid var(--jtp-cat, #555); cursor: pointer;
  background: rgba(255,255,255,.04); user-select: none; overflow: hidden; }
.jtp-chip .jtp-score { opacity: .65; font-size: 10px; }
.jtp-chip .jtp-fill { position: absolute; left: 0; bottom: 0; height: 2px; background: var(--jtp-cat, #8ab4f8); }
.jtp-chip.jtp-excluded { text-decoration: line-through; opacity: .45; }
.jtp-chip.jtp-missing { border-color: #c44; } .jtp-chip.jtp-unwanted { border-color: #e90; }
.jtp-chip.jtp-seen { border-color: #4a4; } .jtp-chip.jtp-unknown { font-style: italic; opacity: .6; }
.jtp-prompt { white-space: pre-wrap; word-break: break-word; user-select: text; }
.jtp-score-line { display: flex; align-items: center; gap: 6px; }
.jtp-meter { flex: 1; height: 6px; background: #444; border-radius: 3px; overflow: hidden; }
.jtp-meter > div { height: 100%; background: #4a4; }
.jtp-dialog { position: fixed; right: 16px; top: 64px; width: 420px; max-height: 70vh; z-index: 10000;
  display: flex; flex-direction: column; background: var(--comfy-menu-bg, #2b2b2b); color: var(--input-text, #ddd);
  border: 1px solid #666; border-radius: 8px; box-shadow: 0 4px 24px rgba(0,0,0,.5); font: 12px sans-serif; }
.jtp-dialog-head { display: flex; justify-content: space-between; align-items: center; padding: 6px 8px;
  border-bottom: 1px solid #555; font-weight: bold; }
.jtp-dialog-body { padding: 8px; overflow-y: auto; }
.jtp-dialog-foot { display: flex; gap: 6px; padding: 6px 8px; border-top: 1px solid #555; flex-wrap: wrap;
  align-items: center; }
`;

function ensureStyle() {
  if (document.getElementById("jtp-style")) return;
  const style = document.createElement("style");
  style.id = "jtp-style";
  style.textContent = STYLE;
  document.head.append(style);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function promptSpelling(tag) {
  // as the tagger writes prompts by default: spaces, escaped parentheses
  return tag.replaceAll("_", " ").replaceAll("(", "\\(").replaceAll(")", "\\)");
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { value: text });
    document.body.append(area);
    area.select();
    const done = document.execCommand?.("copy") ?? false;
    area.remove();
    return done;
  }
}

function toast(summary, detail, severity = "info") {
  const toastApi = app.extensionManager?.toast;
  if (toastApi?.add) toastApi.add({ severity, summary, detail, life: 2500 });
}

function graph() {
  return app.rootGraph ?? app.graph;
}

function widget(node, name) {
  return node?.widgets?.find((w) => w.name === name);
}

function setWidgetValue(node, w, value) {
  w.value = value;
  w.callback?.(value, app.canvas, node);
  node.setDirtyCanvas?.(true, true);
  graph()?.setDirtyCanvas?.(true, true);
}

function chip(tag, score, category, extraClass = "") {
  const colour = CATEGORY_COLOURS[category];
  const node = el("span", { className: `jtp-chip ${extraClass}`.trim(), title: tag });
  if (colour) node.style.setProperty("--jtp-cat", colour);
  node.dataset.tag = tag;
  node.append(el("span", { textContent: tag.replaceAll("_", " ") }));
  if (typeof score === "number") {
    node.append(el("span", { className: "jtp-score", textContent: score.toFixed(2) }));
    const fill = el("span", { className: "jtp-fill" });
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, score)) * 100)}%`;
    node.append(fill);
  }
  return node;
}

// ---- the tag view (JTP Tagger) -------------------------------------------------------------------------------

function addView(node, name, placeholder) {
  ensureStyle();
  const root = el("div", { className: "jtp-view" });
  root.append(el("div", { className: "jtp-hint", textContent: placeholder }));
  let view;
  const view_ = node.addDOMWidget(name, "jtp_view", root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => view?.jtpHeight ?? 120,
    getMaxHeight: () => 800,
    getValue: () => undefined,
    setValue: () => {},
  });
  view = view_;
  view.serialize = false; // not in widgets_values: saved workflows keep INPUT_TYPES' widget order
  view.options = view.options ?? {};
  view.options.serialize = false; // and not in the prompt sent to the server
  view.element = view.element ?? root;
  view.jtpRoot = root;
  return view;
}

function fitView(node, view) {
  // grow the node to show the content (up to a limit; the view scrolls beyond it). Never shrinks the user's size.
  requestAnimationFrame(() => {
    const wanted = Math.min(420, Math.max(120, view.jtpRoot.scrollHeight + 8));
    if (wanted === view.jtpHeight) return;
    view.jtpHeight = wanted;
    const size = node.computeSize?.();
    if (size && node.size && size[1] > node.size[1]) node.setSize([node.size[0], size[1]]);
    node.setDirtyCanvas?.(true, true);
  });
}

function excludeTag(node, tag, chipEl) {
  const w = widget(node, "exclude_tags");
  if (!w) return;
  const current = String(w.value ?? "");
  const have = current.split(/[,\n]/).map((t) => t.trim().toLowerCase().replaceAll(" ", "_"));
  if (!have.includes(tag.toLowerCase())) {
    const joined = current.trim() ? `${current.trim().replace(/,$/, "")}, ${tag}` : tag;
    setWidgetValue(node, w, joined);
  }
  chipEl?.classList.add("jtp-excluded");
  toast("JTP", `Excluded "${tag}" for the next run`);
}

function renderTagView(node, message) {
  const view = widget(node, TAG_VIEW) ?? addView(node, TAG_VIEW, "");
  const root = view.jtpRoot;
  const images = Array.isArray(message?.jtp_tags) ? message.jtp_tags : [];
  const texts = Array.isArray(message?.text) ? message.text : [];
  node.jtpShowPrompt = node.jtpShowPrompt ?? false;
  root.replaceChildren();
  const tableButton = el("button", { textContent: "Tags", title: "Chips by score" });
  const promptButton = el("button", { textContent: "Prompt", title: "The prompt string, as output" });
  const bar = el("div", { className: "jtp-bar" }, tableButton, promptButton,
    el("span", { className: "jtp-hint", textContent: "click: copy · Alt/Shift-click: exclude" }));
  const body = el("div");
  root.append(bar, body);

  const draw = () => {
    tableButton.classList.toggle("jtp-on", !node.jtpShowPrompt);
    promptButton.classList.toggle("jtp-on", node.jtpShowPrompt);
    body.replaceChildren();
    const count = Math.max(images.length, texts.length);
    for (let i = 0; i < count; i++) {
      const block = el("div", { className: "jtp-block" });
      const rows = images[i] ?? [];
      if (count > 1) block.append(el("div", { className: "jtp-block-head", textContent: `Image ${i + 1} of ${count}` }));
      if (node.jtpShowPrompt) {
        block.append(el("div", { className: "jtp-prompt", textContent: String(texts[i] ?? "") }));
      } else {
        const chips = el("div", { className: "jtp-chips" });
        for (const [tag, score, category] of rows) chips.append(chip(tag, score, category));
        if (!rows.length) chips.append(el("span", { className: "jtp-hint", textContent: "no tag above the threshold" }));
        block.append(chips);
      }
      body.append(block);
    }
  };
  tableButton.onclick = () => { node.jtpShowPrompt = false; draw(); fitView(node, view); };
  promptButton.onclick = () => { node.jtpShowPrompt = true; draw(); fitView(node, view); };
  body.addEventListener("click", async (event) => {
    const target = event.target.closest?.(".jtp-chip");
    if (!target) return;
    event.preventDefault();
    event.stopPropagation();
    const tag = target.dataset.tag;
    if (event.altKey || event.shiftKey) excludeTag(node, tag, target);
    else if (await copyText(promptSpelling(tag))) toast("JTP", `Copied "${promptSpelling(tag)}"`);
  });
  draw();
  fitView(node, view);
}

// ---- the check view (JTP Prompt Check) -----------------------------------------------------------------------

function renderCheckView(node, message) {
  const view = widget(node, CHECK_VIEW) ?? addView(node, CHECK_VIEW, "");
  const root = view.jtpRoot;
  root.replaceChildren();
  const check = Array.isArray(message?.jtp_check) ? message.jtp_check[0] : null;
  if (!check) return;
  const images = check.images ?? [];
  images.forEach((image, i) => {
    const best = i === check.best;
    const head = el("div", { className: "jtp-block-head jtp-score-line" },
      el("span", { textContent: `#${i + 1}${best ? " ★ best" : ""}` }));
    const meter = el("div", { className: "jtp-meter" }, el("div"));
    meter.firstChild.style.width = `${Math.round(image.adherence * 100)}%`;
    head.append(meter, el("span", { textContent: `${Math.round(image.adherence * 100)}%` }));
    const chips = el("div", { className: "jtp-chips" });
    for (const [tag, score] of image.missing) chips.append(chip(tag, score, null, "jtp-missing"));
    for (const [tag, score] of image.unwanted) chips.append(chip(tag, score, null, "jtp-unwanted"));
    for (const [tag, score] of image.seen) chips.append(chip(tag, score, null, "jtp-seen"));
    for (const text of image.not_checkable) {
      const unknown = chip(text, null, null, "jtp-unknown");
      unknown.title = "The model does not know this tag: not checkable, not counted";
      chips.append(unknown);
    }
    root.append(el("div", { className: "jtp-block" }, head, chips));
  });
  root.append(el("div", { className: "jtp-hint",
    textContent: "red: missing · orange: unwanted (negative prompt) · green: seen · italic: not checkable" }));
  fitView(node, view);
}

// ---- right-click "Tag with JTP" ------------------------------------------------------------------------------

function parseViewUrl(src) {
  try {
    const url = new URL(src, location.href);
    const filename = url.searchParams.get("filename");
    if (!filename) return null;
    return { filename, subfolder: url.searchParams.get("subfolder") ?? "", type: url.searchParams.get("type") ?? "output" };
  } catch {
    return null;
  }
}

function parseImageWidget(value) {
  // LoadImage's value: "name.png", "sub/name.png" or "name.png [output]"
  if (typeof value !== "string" || !value.trim()) return null;
  let type = "input";
  let name = value.trim();
  const annotated = name.match(/^(.*) \[(input|output|temp)\]$/);
  if (annotated) [, name, type] = annotated;
  const slash = name.lastIndexOf("/");
  return { filename: name.slice(slash + 1), subfolder: slash >= 0 ? name.slice(0, slash) : "", type };
}

export function imageOfNode(node) {
  const imgs = node?.imgs;
  if (imgs?.length) {
    const found = parseViewUrl(imgs[node.imageIndex ?? 0]?.src ?? imgs[0]?.src);
    if (found) return found;
  }
  const outputs = app.nodeOutputs?.[String(node?.id)]?.images;
  if (outputs?.length) {
    const { filename, subfolder = "", type = "output" } = outputs[0];
    if (filename) return { filename, subfolder, type };
  }
  const imageWidget = widget(node, "image");
  if (imageWidget && (node.type === "LoadImage" || node.comfyClass === "LoadImage" || typeof imageWidget.value === "string")) {
    return parseImageWidget(imageWidget.value);
  }
  return null;
}

function loaderInputs() {
  const loader = graph()?._nodes?.find((n) => n.type === LOADER || n.comfyClass === LOADER);
  if (!loader) return undefined;
  const inputs = {};
  for (const w of loader.widgets ?? []) if (w.name && w.serialize !== false) inputs[w.name] = w.value;
  return inputs;
}

function promptTargets() {
  // nodes with a multi-line text widget (CLIP Text Encode and the like): [node, widget]
  const targets = [];
  for (const n of graph()?._nodes ?? []) {
    for (const w of n.widgets ?? []) {
      const multiline = w.options?.multiline || w.type === "customtext" || w.inputEl?.tagName === "TEXTAREA";
      if (multiline && typeof w.value === "string" && w.name !== "exclude_tags" && w.serialize !== false) {
        targets.push([n, w]);
        break;
      }
    }
  }
  return targets;
}

function closeDialog() {
  document.getElementById("jtp-tag-dialog")?.remove();
}

function showDialog(title) {
  ensureStyle();
  closeDialog();
  const body = el("div", { className: "jtp-dialog-body", textContent: "Tagging…" });
  const foot = el("div", { className: "jtp-dialog-foot" });
  const close = el("button", { textContent: "✕", title: "Close", onclick: closeDialog });
  const dialog = el("div", { className: "jtp-dialog", id: "jtp-tag-dialog" },
    el("div", { className: "jtp-dialog-head" }, el("span", { textContent: title }), close), body, foot);
  document.body.append(dialog);
  return { body, foot };
}

async function tagNodeImage(node) {
  const image = imageOfNode(node);
  const { body, foot } = showDialog(`JTP tags — ${image?.filename ?? "?"}`);
  if (!image) {
    body.textContent = "This node shows no image yet.";
    return;
  }
  let reply;
  try {
    const response = await api.fetchApi("/jtp/tag", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...image, model: loaderInputs() }),
    });
    reply = await response.json();
    if (!response.ok) throw new Error(reply?.error ?? `HTTP ${response.status}`);
  } catch (error) {
    body.textContent = `Could not tag the image: ${error.message ?? error}`;
    body.classList.add("jtp-error");
    return;
  }
  body.replaceChildren();
  const chips = el("div", { className: "jtp-chips" });
  for (const [tag, score, category] of reply.tags) chips.append(chip(tag, score, category));
  chips.addEventListener("click", async (event) => {
    const target = event.target.closest?.(".jtp-chip");
    if (target && (await copyText(promptSpelling(target.dataset.tag)))) toast("JTP", "Copied the tag");
  });
  body.append(el("div", { className: "jtp-hint", textContent: `${reply.model}: ${reply.tags.length} tags` }), chips,
    el("div", { className: "jtp-prompt", textContent: reply.text, style: "margin-top:6px" }));

  const status = el("span", { className: "jtp-hint jtp-status" });
  const copy = el("button", { textContent: "Copy", className: "jtp-copy" });
  copy.onclick = async () => { status.textContent = (await copyText(reply.text)) ? "Copied" : "Copy failed"; };
  const targets = promptTargets();
  const select = el("select", { className: "jtp-target" });
  targets.forEach(([n, w], i) => select.append(el("option", { value: String(i), textContent: `#${n.id} ${n.title} · ${w.name}` })));
  if (!targets.length) select.append(el("option", { textContent: "no text node in the graph", disabled: true }));
  select.disabled = !targets.length;
  const send = el("button", { textContent: "Send to", className: "jtp-send", disabled: !targets.length,
    title: targets.length ? "Replace that node's text with these tags" : "No text/prompt node in the graph" });
  send.onclick = () => {
    const [n, w] = targets[Number(select.value)] ?? [];
    if (!n) return;
    setWidgetValue(n, w, reply.text);
    status.textContent = `Sent to #${n.id}`;
  };
  foot.append(copy, send, select, status);
}

app.registerExtension({
  name: "jtp_tagger.TagView",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (name !== TAGGER && name !== CHECK) return;
    const viewName = name === TAGGER ? TAG_VIEW : CHECK_VIEW;
    const placeholder = name === TAGGER ? "The tags appear here after the node runs." : "The check appears here after the node runs.";
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addView(this, viewName, placeholder);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (name === TAGGER) renderTagView(this, message);
      else renderCheckView(this, message);
      this.setDirtyCanvas?.(true, true);
    };
  },

  getNodeMenuItems(node) {
    if (!imageOfNode(node)) return [];
    return [null, { content: "Tag with JTP", callback: () => tagNodeImage(node) }];
  },
});
