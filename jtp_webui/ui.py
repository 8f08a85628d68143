"""The JTP Tagger tab: tag one image, caption a folder, send tags to the txt2img / img2img prompt.

Only Gradio API that both hosts ship is used (A1111 1.x: Gradio 3.41; Forge: Gradio 4.x); the one difference
that matters here, the keyword for an event's JavaScript, is settled in ``js_keyword``. The work is done by
``TabActions``, which knows nothing of Gradio, so the tab's behaviour is testable without it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from jtp_core import JTPError, TagOptions, parse_tag_list
from jtp_core.captioning.caption_files import MODES as CAPTION_MODES
from jtp_core.tags.postprocess import ORDERS

from .service import TaggerService

SCORE_HEADERS = ["tag", "score"]


def score_table(rows: list[list[Any]]) -> dict[str, Any]:
    """The Scores table's value. Given as headers + data: a bare empty list becomes one blank row (``[[]]``) in
    both Gradio 3 and 4, and Gradio 3 then drops the headers too."""
    return {"headers": list(SCORE_HEADERS), "data": rows}


class CaptionStopped(Exception):
    """Raised from the progress callback when the user pressed Stop; captions written so far stay."""


def options_from_widgets(
    threshold: float,
    max_tags: float,
    exclude: str,
    trigger_words: str,
    replace_underscores: bool,
    escape_parentheses: bool,
    weighted: bool,
    order: str,
    separator: str,
    calibration: str = "auto",
) -> TagOptions:
    return TagOptions(
        threshold=float(threshold),
        max_tags=int(max_tags or 0),
        exclude=parse_tag_list(exclude),
        trigger_words=parse_tag_list(trigger_words),
        replace_underscores=bool(replace_underscores),
        escape_parentheses=bool(escape_parentheses),
        weighted=bool(weighted),
        order=order,
        separator=separator or ", ",
        calibration=calibration,
    )


class TabActions:
    """What the tab's buttons do. Errors are JTPError / ValueError with a message for the user."""

    def __init__(self, service: TaggerService) -> None:
        self.service = service
        self._stop = threading.Event()

    def tag(self, image: Image.Image | None, model: str, *widgets: Any) -> tuple[str, dict[str, Any], str]:
        """→ (tag string, score table, status line)."""
        if image is None:
            raise ValueError("Load an image first.")
        started = time.perf_counter()
        name, (result,) = self.service.tag_images([image], model=model, options=options_from_widgets(*widgets))
        rows = [[tag, score] for tag, score in result.scores.items()]
        loaded = self.service.loaded() or {"device": self.service.config.device}
        where = f" on {loaded['device']}" if loaded.get("device") else ""
        status = f"{len(rows)} tags from {name}{where} in {time.perf_counter() - started:.2f} s"
        return result.text, score_table(rows), status

    def caption(
        self,
        folder: str,
        output: str,
        recursive: bool,
        mode: str,
        model: str,
        *widgets: Any,
        progress: Callable[..., Any] | None = None,
    ) -> str:
        """Caption a folder with the captioning pipeline; → its summary."""
        from jtp_core.captioning.caption import CaptionRequest

        if not folder or not folder.strip():
            raise ValueError("Give the folder of images to caption.")
        source = Path(folder.strip()).expanduser()
        if not source.exists():
            raise ValueError(f"No such folder: {source}")
        request = CaptionRequest(
            inputs=[source],
            recursive=bool(recursive),
            output_dir=Path(output.strip()).expanduser() if output and output.strip() else None,
            mode=mode,
            options=options_from_widgets(*widgets),
        )
        self._stop.clear()
        reached = [0, 0]

        def on_progress(done: int, total: int) -> None:
            reached[:] = [done, total]
            if progress is not None:
                progress((done, total), desc="Captioning")
            if self._stop.is_set():
                raise CaptionStopped

        try:
            summary = self.service.caption(request, model=model, on_progress=on_progress)
        except CaptionStopped:
            done, total = reached
            return (f"Stopped after {done} of {total} images; their captions are written. "
                    f"Run again with the same settings to caption the {total - done} left (resumed in every mode).")
        return summary.to_text()

    def stop(self) -> str:
        self._stop.set()
        return "Stopping after the current batch…"

    def unload(self) -> str:
        return "Model unloaded." if self.service.unload() else "No model was loaded."


def user_errors(gr: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the core's errors as a Gradio error message instead of a generic 'Error'."""

    @functools.wraps(fn)  # keeps the signature: Gradio reads it to find the Progress parameter
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (JTPError, ValueError, OSError) as error:
            raise gr.Error(str(error)) from error

    return wrapper


def js_keyword(gr: Any) -> str:
    """Gradio 3 names an event's JavaScript ``_js``, Gradio 4 ``js`` (Forge maps the old name, plain 4.x does not)."""
    return "_js" if int(str(gr.__version__).split(".")[0]) < 4 else "js"


def build_tab(gr: Any, service: TaggerService, prompt_boxes: Mapping[str, Any] | None = None) -> Any:
    """The tab's Blocks. ``prompt_boxes``: the WebUI's prompt Textboxes by tab name ("txt2img", "img2img")."""
    actions = TabActions(service)
    config = service.config
    defaults = config.options
    names = service.model_names()
    default_model = service.default_model(names)

    with gr.Blocks(analytics_enabled=False) as tab:
        with gr.Row():
            with gr.Column(variant="panel"):
                image = gr.Image(type="pil", image_mode="RGBA", label="Image", elem_id="jtp_image")
                with gr.Row():
                    model = gr.Dropdown(choices=names, value=default_model, label="Model", elem_id="jtp_model")
                    refresh = gr.Button("Refresh list", elem_id="jtp_refresh")
                threshold = gr.Slider(0.0, 1.0, value=defaults.threshold, step=0.01, label="Threshold",
                                      elem_id="jtp_threshold")
                calibration = gr.Textbox(
                    value=str(defaults.calibration or "off"), elem_id="jtp_calibration",
                    label="JTP-3 / Hydra thresholds: auto = each tag's calibrated one; off = the threshold above; "
                          "0 (recall) … 1 (precision); or a metric such as f2.0@0.1",
                )
                max_tags = gr.Number(value=defaults.max_tags, precision=0, label="Max tags (0 = no limit)")
                exclude = gr.Textbox(value=", ".join(defaults.exclude), label="Exclude tags",
                                     placeholder="comma-separated; * matches anything, e.g. *_background")
                trigger_words = gr.Textbox(label="Trigger words (written first)", placeholder="e.g. my_character")
                with gr.Row():
                    underscores = gr.Checkbox(value=defaults.replace_underscores, label="Underscores as spaces")
                    escape = gr.Checkbox(value=defaults.escape_parentheses, label=r"Escape \( \)")
                    weighted = gr.Checkbox(value=defaults.weighted, label="Weighted (tag:0.93)")
                order = gr.Radio(list(ORDERS), value=defaults.order, label="Order")
                separator = gr.Textbox(value=defaults.separator, label="Separator")
                tag_button = gr.Button("Tag image", variant="primary", elem_id="jtp_tag")
            with gr.Column(variant="panel"):
                tags = gr.Textbox(label="Tags", lines=6, elem_id="jtp_tags")
                with gr.Row():
                    send = {target: gr.Button(f"Send to {target}", elem_id=f"jtp_send_{target}")
                            for target in (prompt_boxes or {})}
                    unload = gr.Button("Unload model", elem_id="jtp_unload")
                status = gr.Textbox(label="Status", interactive=False, elem_id="jtp_status")
                # an explicit empty value and no minimum row count: else Gradio shows a blank ("", 0) row
                table = gr.Dataframe(value=score_table([]), headers=SCORE_HEADERS, datatype=["str", "number"],
                                     row_count=(0, "dynamic"), interactive=False, label="Scores",
                                     elem_id="jtp_scores")
        with gr.Accordion("Caption a folder (one .txt per image, for LoRA training)", open=False):
            with gr.Row():
                folder = gr.Textbox(label="Folder of images", placeholder="/path/to/dataset", elem_id="jtp_folder")
                output = gr.Textbox(label="Output folder (empty: beside each image)", elem_id="jtp_output")
            with gr.Row():
                recursive = gr.Checkbox(value=False, label="Include subfolders")
                mode = gr.Radio(list(CAPTION_MODES), value="skip", label="Existing captions")
            with gr.Row():
                caption_button = gr.Button("Caption folder", variant="primary", elem_id="jtp_caption")
                stop = gr.Button("Stop", elem_id="jtp_stop")
            summary = gr.Textbox(label="Summary", lines=6, interactive=False, elem_id="jtp_summary")

        option_widgets = [threshold, max_tags, exclude, trigger_words, underscores, escape, weighted, order, separator,
                          calibration]

        def caption_folder(folder, output, recursive, mode, model, threshold, max_tags, exclude, trigger_words,
                           underscores, escape, weighted, order, separator, calibration,
                           progress=gr.Progress()):  # noqa: B008
            # explicit parameters: Gradio finds the Progress parameter only among named positional ones
            widgets = (threshold, max_tags, exclude, trigger_words, underscores, escape, weighted, order, separator,
                       calibration)
            return actions.caption(folder, output, recursive, mode, model, *widgets, progress=progress)

        tag_button.click(fn=user_errors(gr, actions.tag), inputs=[image, model, *option_widgets],
                         outputs=[tags, table, status])
        refresh.click(fn=lambda: gr.update(choices=service.model_names()), inputs=[], outputs=[model])
        unload.click(fn=actions.unload, inputs=[], outputs=[status])
        caption_button.click(fn=user_errors(gr, caption_folder),
                             inputs=[folder, output, recursive, mode, model, *option_widgets], outputs=[summary])
        stop.click(fn=actions.stop, inputs=[], outputs=[summary])
        for target, button in send.items():
            button.click(fn=lambda text: text, inputs=[tags], outputs=[prompt_boxes[target]])
            button.click(fn=None, inputs=[], outputs=[], **{js_keyword(gr): f"switch_to_{target}"})
    return tab
