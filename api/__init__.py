"""The composition root: FastAPI app, CLI, settings, runtime wiring."""
