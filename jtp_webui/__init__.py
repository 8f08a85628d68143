"""The SD WebUI (A1111 / Forge) side of the JTP tagger, written without importing the WebUI.

``scripts/jtp_tagger.py`` is the only file that touches the WebUI's modules; it hands what it reads from
them (settings, the models folder, the GPU queue lock, the prompt boxes) to the pieces here:

- ``service``: the loaded tagger (one at a time, keyed by model, device and precision), tagging and folder
  captioning through it, and the checking of API requests (bad input → an HTTP 4xx with a message).
- ``settings``: the extension's settings as plain data, and the service configuration read from them.
- ``api``: the ``/jtp/v1`` FastAPI routes.
- ``ui``: the Gradio tab (Gradio 3.41 for A1111, 4.x for Forge).
"""
