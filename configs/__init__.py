"""Hydra configs of memharness (``pkg://configs``).

Importing this package registers the ``memharness_plugins`` resolver that the primary configs use
for ``hydra.searchpath``: the plugin folders named by ``MEMHARNESS_PLUGINS`` (see
``harness.registry``). Hydra imports this package before it reads a config from it.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from harness.registry import search_path

if not OmegaConf.has_resolver("memharness_plugins"):
    OmegaConf.register_new_resolver("memharness_plugins", search_path)
