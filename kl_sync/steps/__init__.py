"""The pipeline steps: parse (system_log), orders, customers, suppress, send, verify. One module each; plain functions."""
