"""The pipeline steps: parse (system_log), orders, suppress, send. One module each; plain functions."""
