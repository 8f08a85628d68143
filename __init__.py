"""ComfyUI entry point: registers the JTP nodes. (SD WebUI loads scripts/ instead and never imports this.)"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.routes import register as _register_routes

_register_routes()  # POST /jtp/tag for the right-click "Tag with JTP" (no-op without ComfyUI's server)

WEB_DIRECTORY = "./web/js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
