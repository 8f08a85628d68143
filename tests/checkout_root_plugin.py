"""pytest plugin (loaded with ``-p`` from pyproject.toml): the checkout root is a folder, not a test package.

The root holds ``__init__.py`` because ComfyUI imports ``custom_nodes/<pack>/__init__.py`` as a package. pytest
would make the root a Package and import that file when the session starts: under the checkout folder's name when
it is a Python identifier, and as a loose ``__init__`` module otherwise (``git clone … jtp-tagger``), where its
relative import fails and every test errors. Nothing in the root is a test; the tests import the pack explicitly
(``comfy_standin.import_pack``), so pytest collects the root as a plain directory whatever the folder is called.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path == parent.config.rootpath and (path / "__init__.py").is_file():
        return pytest.Dir.from_parent(parent, path=path)
    return None
