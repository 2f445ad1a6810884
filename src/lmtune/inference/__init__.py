"""Using a finished run: the Predictor (and later the server and exporters)."""
