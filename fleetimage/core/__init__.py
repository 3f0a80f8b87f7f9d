"""The bottom layer: data types and events, the exception tree, names, durations, redaction.

Imports nothing of fleetimage's; everything else may import it.
"""
