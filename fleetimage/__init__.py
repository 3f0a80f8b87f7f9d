"""fleetimage: take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow."""

from fleetimage.errors import AwsError, ConfigError, FleetImageError, JournalError, MockError

__all__ = ["AwsError", "ConfigError", "FleetImageError", "JournalError", "MockError"]
__version__ = "0.1.0"
