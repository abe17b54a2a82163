"""The serving benchmarks' load generator: an OpenAI-compatible streaming client
(client.py), prompts (prompts.py), load profiles and sweeps (loadgen.py). No torch, no
transformers: it runs beside the server, not in the worker's model process."""
