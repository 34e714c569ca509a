"""Trained adapters shipped with memharness (data only). ``gemma3_270m_deltamem/``: the δ-mem adapter
used by default by ``method=deltamem`` on ``model=gemma3_270m``; see methods/_deltamem/README.md."""
