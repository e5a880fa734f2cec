"""Veil: self-hosted, privacy-first custom computer vision."""

import os

# onnxruntime (1.2x+) writes a device id and an event store under ~/.cache/Microsoft/DeveloperTools and a session
# file in $TMPDIR as soon as it is imported, for Microsoft's telemetry. A privacy-first product collects nothing:
# opt out before any Veil module imports onnxruntime (an operator may still set the variable to 0 themselves).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
