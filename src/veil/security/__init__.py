"""Security primitives: envelope encryption (KEK/DEK, shredding, rotation), API keys and roles, audit chain.

Owns every cryptographic decision. Must not import FastAPI, torch or image code.
"""
