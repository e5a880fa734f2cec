"""Safe image ingest: bounded decoding, format and size limits, EXIF orientation, metadata stripping.

Owns the rule that only re-encoded pixels get past the door. Must not store anything or know HTTP.
"""
