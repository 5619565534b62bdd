"""Data stewardship: retention by policy (``retention.py``, policies in ``retention.yml``) and a patient's
erasure (``erasure.py``). It spans raw, the marts and the monitors' history, so it sits beside the
monitors and dashboards, over the runtime only."""
