"""``edgead serve``: camera, video, stream or folder inference behind a live web page.

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client, python-multipart, Pillow); the
runtime itself does not.
"""
