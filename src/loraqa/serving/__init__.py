"""`loraqa serve`: answer questions over HTTP and in a web page with adapters loaded at start-up.

- registry.py: loads the adapters (one base per base model, named adapters sharing it)
- batching.py: the queue that answers requests arriving together in one model call
- schemas.py, settings.py: request/response bodies, limits
- app.py: `create_app(registry, settings)`, the FastAPI app; server.py runs it under uvicorn,
  with graceful shutdown and protocol.py's deadline for a request's head
- static/: the web page (plain HTML and JavaScript)

FastAPI and uvicorn come with the `[serve]` extra; nothing here imports them at package import.
"""
