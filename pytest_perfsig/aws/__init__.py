"""AWS adapters: CodePipeline approvals (:mod:`.codepipeline`), CodeDeploy deployments and
rollbacks (:mod:`.codedeploy`), the one client factory (:mod:`.clients`) and the one translation
of AWS failures into perfsig errors (:mod:`.errors`).

Nothing here talks to AWS at import time, and importing this package does not need boto3: the
clients are created on demand, and botocore is only needed once a client exists.
"""

from __future__ import annotations

from ..errors import ApprovalError, AwsError, CodeDeployError, RegistryError

__all__ = ["ApprovalError", "AwsError", "CodeDeployError", "RegistryError"]
