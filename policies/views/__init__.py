"""The portal's pages, one module per feature (the names of `policies/services/` and `policies/api/`).

Routes are in `policies/urls.py`. Views parse input, call one service or selector, render output.
"""
