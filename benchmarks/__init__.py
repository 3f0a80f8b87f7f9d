"""fleetimage benchmarks: throughput against the mock EC2 endpoint, against the bound the
token buckets allow, and against the boto3 scripts users would otherwise run.

``python -m benchmarks`` (from a checkout; not installed) runs the scenarios of
``benchmarks/scenarios.yaml``; see ``benchmarks/README.md``.
"""

__all__: list[str] = []
