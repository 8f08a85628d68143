"""The names of the implication modes each RedRocket tool offers (no torch: the command line lists them)."""

JTP1_MODES = ("off", "remove", "add")  # this project's JTP-1 tag knowledge, with a tag table (tag_knowledge.py)
JTP3_MODES = ("inherit", "constrain", "remove", "constrain-remove", "off")  # the JTP-3 release (implications.py)
HYDRA_MODES = (  # the Hydra package (implications.py)
    "preserve", "inherit", "constrain", "enforce", "remove", "constrain-remove",
    "enforce-inherit", "enforce-constrain", "enforce-remove", "off",
)
# every mode a TagOptions may name; "auto" is the model's own tool's default
ALL_MODES: tuple[str, ...] = tuple(dict.fromkeys(("auto", *JTP1_MODES, *JTP3_MODES, *HYDRA_MODES)))
SUBCATEGORIES = ("rating", "color")  # the Hydra package's derived subcategories (``hydra/label.py``)
