"""Serving a saved text model over HTTP: ``nlp-transfer serve`` and :func:`serve`.

:mod:`.app` builds the FastAPI application (endpoints, limits, metrics, the page at ``/``),
:mod:`.batcher` groups concurrent requests into batches, :mod:`.server` runs it on uvicorn. See
``docs/serving.md``.
"""

from .app import ServeSettings, create_app
from .server import serve

__all__ = ["ServeSettings", "create_app", "serve"]
