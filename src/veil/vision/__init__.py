"""Training and inference: EfficientNet-Lite backbone, classifiers, detectors, metrics, ONNX export, runtime.

Owns models. Torch is imported only by training modules (`backbone`, `classify`, `detect`, `train`);
`runtime` (load_model → .classify / .detect), `metrics` (performance at any threshold), `data`, `datasets`,
`export` (bundle) and `plots` run without torch. Must not know HTTP or the database.
"""
