"""A mock EC2 + STS endpoint speaking the real Query protocol on loopback.

Imports only :mod:`fleetimage.core` and :mod:`fleetimage.config` (AWS's limits); knows the wire.

The real aiobotocore/boto3 client talks to it unchanged through ``endpoint_url``::

    from fleetimage.mock import MockConfig, MockEC2

    async with MockEC2(MockConfig(regions=("us-east-1",), instances_per_region=50)) as mock:
        session.create_client("ec2", region_name="us-east-1",
                              endpoint_url=mock.endpoint_url, **mock.credentials())

Region and service come from the SigV4 credential scope, the account from the access key id.
It enforces AWS's per-action token buckets, moves images pending → available/failed over
time, and injects faults (5xx, throttles, resets, slow and lost answers) reproducibly.

Time is real, scaled by ``MockConfig.time_scale`` (``MockEC2.aws_now()`` = AWS seconds since
start): AssumeRole sessions expire after ``DurationSeconds`` (then EC2 answers
``RequestExpired``, STS ``ExpiredToken``), :class:`Outage` windows make a region or action
unavailable, :class:`InstanceEvent` s change instances at given times, and every answer can
carry latency. See :mod:`fleetimage.mock.clock` for how AWS time maps to wall time.

Beside EC2 and STS it answers SNS ``Publish`` (messages kept in ``MockEC2.sns_messages``) and
AWS Organizations' ``ListChildren``/``ListAccountsForParent`` over ``MockConfig.organization``.
"""

from fleetimage.mock.buckets import load_default_limits
from fleetimage.mock.config import (
    DEFAULT_STATE_MIX,
    INSTANCE_STATES,
    InstanceEvent,
    MockConfig,
    Outage,
)
from fleetimage.mock.fault_config import FaultConfig
from fleetimage.mock.fleet import ImageRecord, InstanceRecord
from fleetimage.mock.organizations import OrgAccount, OrgTree
from fleetimage.mock.runner import MockEC2Thread, serve
from fleetimage.mock.server import MockEC2

__all__ = [
    "DEFAULT_STATE_MIX",
    "INSTANCE_STATES",
    "FaultConfig",
    "ImageRecord",
    "InstanceEvent",
    "InstanceRecord",
    "MockConfig",
    "MockEC2",
    "MockEC2Thread",
    "OrgAccount",
    "OrgTree",
    "Outage",
    "load_default_limits",
    "serve",
]
