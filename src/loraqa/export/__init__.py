"""`loraqa export`: the merged model in a format another runtime loads (ONNX, GGUF).

`command.run_export` loads base + adapter merged in fp32 (as `loraqa merge` does), then one writer
per format: `onnx.py` (graphs for ONNX Runtime), `gguf_model.py` (llama.cpp / Ollama). Each writes a
new directory whole or not at all, with a README saying how to run what it holds.
"""
