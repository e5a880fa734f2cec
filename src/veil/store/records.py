"""Typed views of the JSON a row keeps: an iteration's status names and what training recorded on it.

>>> record = IterationRecord.of(iteration)      # never `iteration.metrics["..."]`
>>> record.tag_ids_by_name(), record.evaluation_method, record.backbone
"""

from __future__ import annotations

TRAINING, COMPLETED, FAILED = "Training", "Completed", "Failed"
