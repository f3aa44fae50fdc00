"""AWS adapters: CodePipeline approvals (:mod:`.codepipeline`), CodeDeploy deployments and
rollbacks (:mod:`.codedeploy`), the one client factory (:mod:`.clients`) and the one translation
of AWS failures into perfsig errors (:mod:`.errors`).

Their errors (:class:`~pytest_perfsig.errors.AwsError` and its subclasses) live in
:mod:`pytest_perfsig.errors` with every other error. Nothing here talks to AWS at import time,
and importing this package does not need boto3: the clients are created on demand, and botocore
is only needed once a client exists.
"""
