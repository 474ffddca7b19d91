"""The peer of ``serve_load.py``: a straightforward FastAPI server around ``transformers.pipeline``.

    python benchmarks/pipeline_server.py --model_dir M --port 8001 --batch_size 8

What a user writes when they serve a model themselves: one ``pipeline("text-classification")``
on the CPU, a synchronous ``POST /predict`` (FastAPI runs it in its thread pool, so concurrent
requests call the pipeline from several threads at once), the pipeline's own batching of each
request's texts (``batch_size``) and the same truncation as ours (the model's saved
``max_seq_length``). The same request and response shapes as ``nlp-transfer serve``.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint's annotation (a class
# defined inside main) at run time.
import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args(argv)

    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    config = json.loads((Path(args.model_dir) / "config.json").read_text(encoding="utf-8"))
    max_length = config.get("max_seq_length") or 512
    classify = pipeline("text-classification", model=args.model_dir, device=-1)
    app = FastAPI()

    class Body(BaseModel):
        texts: list[str]

    @app.post("/predict")
    def predict(body: Body) -> dict:
        results = classify(
            body.texts, batch_size=args.batch_size, truncation=True, max_length=max_length
        )
        return {"predictions": results}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
