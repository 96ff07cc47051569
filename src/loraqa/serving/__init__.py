"""`loraqa serve`: answer questions over HTTP, the OpenAI API and a web page with LoRA adapters.

- registry.py: loads the adapters (one base per base model, named adapters sharing it)
- batching.py: the queue that answers requests arriving together in one model call
- schemas.py, settings.py: request/response bodies, limits
- app.py: `create_app(registry, settings)`, the FastAPI app; server.py runs it under uvicorn,
  with graceful shutdown and protocol.py's deadline for a request's head
- openai_api.py: /v1/models, /v1/chat/completions, /v1/completions; streaming.py: token-by-token answers
- auth.py: request ids, the API key, log lines; metrics.py: /metrics; errors.py: error bodies
- admin.py: adapters loaded and unloaded at run time
- static/: the web page (plain HTML and JavaScript)

FastAPI and uvicorn come with the `[serve]` extra; nothing here imports them at package import.
"""
