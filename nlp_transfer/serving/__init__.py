"""Serving a saved text model over HTTP: ``nlp-transfer serve`` and :func:`serve`.

:mod:`.app` builds the FastAPI application (endpoints, the page at ``/``) around
:mod:`.model_server` (the loaded model, its metrics, checks and metadata), :mod:`.batcher`
groups concurrent requests into batches, :mod:`.protocol` holds the request model and the body
limit, :mod:`.settings` the flags, and :mod:`.server` runs it on uvicorn. See
``docs/serving.md``.
"""

from .app import create_app
from .server import serve
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]
