"""Captioning and music QA: reads audio and writes captions into a library (see the captions issue)."""
