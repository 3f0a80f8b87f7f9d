"""What a run tells: the report (JSON/CSV, summary), live progress, structured logs.

Imports only :mod:`fleetimage.core`; event subscribers and renderers, never the wire.
"""
