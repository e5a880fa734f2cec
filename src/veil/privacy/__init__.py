"""Anonymization: face (CenterFace ONNX) and custom detectors, obfuscation methods, image and video
pipelines, and the ingest policy hook.

Owns hiding people in pixels before anything is kept. Must not store or encrypt (callers do), nor
import torch.
"""
