"""Running a fleet: plan, discovery, lanes, limiter, retry, and one module per operation.

Imports :mod:`aws`, :mod:`config`, :mod:`journal`, :mod:`output` and :mod:`core`; never :mod:`cli`.
"""
