"""HTTP pieces of the server: the request model, 422 errors that name the field, the body limit."""

import json


def request_model():
    """The request model (built on first use: pydantic is imported with FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class PredictRequest(BaseModel):
        """``POST /predict``'s body."""

        model_config = ConfigDict(extra="forbid")
        texts: list[str] = Field(
            min_length=1, description="Texts to classify (at least one).", examples=[["great"]]
        )
        text_pairs: list[str] | None = Field(
            None, description="Sentence-pair models: the second text of each item of texts."
        )
        coverage: float | None = Field(
            None,
            gt=0,
            lt=1,
            description="E.g. 0.9: add a conformal prediction_set (regression: interval) that "
            "holds the truth with at least this probability.",
        )

    return PredictRequest


def unprocessable(field_name: str, message: str):
    """A 422 in FastAPI's own validation-error shape, naming the body field."""
    from fastapi import HTTPException

    return HTTPException(
        status_code=422,
        detail=[{"loc": ["body", field_name], "msg": message, "type": "value_error"}],
    )


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app reads it
    (by its ``Content-Length``, or by counting a chunked body as it arrives)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        message = (
            f"The request body is over the server's limit of {self.max_bytes} bytes "
            "(--max_body_bytes): send fewer or shorter texts per request."
        )
        body = json.dumps({"detail": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class CountRequests:
    """ASGI middleware: count every HTTP response by route and status code (Prometheus).

    A plain ASGI wrapper, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    runs the app in a task and streams the response through memory channels, a cost on every
    request that Starlette's docs advise avoiding where speed matters. Placed outermost, it also
    counts the 413s of :class:`BodyLimit` (route ``other``).
    """

    def __init__(self, app, counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # the app raised before it answered

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")  # set by the router on the shared scope when it matched
            path = getattr(route, "path", None) or "other"
            self.counter.labels(path, str(status)).inc()
