"""Edge analytics: video sources, people detection, ByteTrack tracking, Spatial-Analysis operators,
event sinks.

Owns the video-to-events pipeline; frames live in memory only. Must not import torch, FastAPI or the store.
"""
