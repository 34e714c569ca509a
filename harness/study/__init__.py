"""The study: does a fixed-size state (δ-mem) hold up next to full KV, windows, KV compression and
retrieval, and at what cost? Part 1 (``mechanism``) needs no model; parts 2–5 are harness presets
(``configs/experiment/study_*.yaml``); ``python -m harness.study`` renders every part into one
static page (HTML + Markdown) from the runs. See docs/study/README.md.
"""
