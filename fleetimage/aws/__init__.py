"""The wire: aiobotocore sessions and clients, credentials, AWS error translation, IAM permissions.

Imports :mod:`fleetimage.config` and :mod:`fleetimage.core`; only it (and ``mock``) knows botocore.
"""
