// Shows a JTP node's text output on the node after it runs (JTP Tagger has its own tag view, jtp_tag_view.js): the scores (JTP Tag
// Heatmap), the summary (JTP Caption Folder, JTP Save Captions).
//
// The node returns {"ui": {"text": [one string per image]}}; ComfyUI hands that to the node's
// onExecuted. We show it in a read-only multiline box that is display only: it is kept out of the
// workflow's widgets_values (widget.serialize) and out of the prompt sent to the server
// (widget.options.serialize), so saved workflows keep the INPUT_TYPES widget order.

import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const NODE_NAMES = new Set(["JTPTagHeatmap", "JTPCaptionFolder", "JTPSaveCaptions"]);
const DISPLAY_NAME = "shown_text";
const PLACEHOLDER = "The result appears here after the node runs.";

function addTagsDisplay(node) {
  const spec = ["STRING", { multiline: true, placeholder: PLACEHOLDER }];
  const { widget } = ComfyWidgets.STRING(node, DISPLAY_NAME, spec, app);
  widget.serialize = false;
  widget.options = widget.options ?? {};
  widget.options.serialize = false;
  const textarea = widget.inputEl ?? widget.element;
  if (textarea) {
    textarea.readOnly = true;
    textarea.placeholder = PLACEHOLDER;
    textarea.style.opacity = "0.85"; // looks like output, not like one of the node's settings
  }
  return widget;
}

function tagsText(texts) {
  // one image: its tags as they are, ready to copy; a batch: one block per image, blank line between
  return texts.length === 1 ? String(texts[0]) : texts.map((text, i) => `#${i + 1}: ${text}`).join("\n\n");
}

app.registerExtension({
  name: "jtp_tagger.ShowText",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_NAMES.has(nodeData?.name)) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addTagsDisplay(this);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const texts = message?.text;
      if (!Array.isArray(texts)) return;
      const display = this.widgets?.find((w) => w.name === DISPLAY_NAME) ?? addTagsDisplay(this);
      display.value = tagsText(texts);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
