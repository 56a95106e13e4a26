"""Evaluation beyond the training-time validation: transfer to another domain's labels, with
per-element energy offsets fitted on a calibration split (``offsets``, ``transfer``), and the
check for elements a head has no reference energy for (``references``)."""
