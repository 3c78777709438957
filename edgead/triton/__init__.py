"""Bundles served by NVIDIA Triton Inference Server.

``repository``: ``edgead export-triton`` writes a Triton model repository (a Python-backend
model per bundle that runs the edgead runtime, and the ensemble form for GPU servers);
``backend_model``: the Python-backend models themselves (imported by the generated model.py
files inside Triton); ``local``: a tritonserver from the ``nvidia-pytriton`` wheel, started on
this machine's CPU for tests and benchmarks.
"""
