"""An S3-compatible server on loopback for the tests: moto in server mode, an emulator of AWS S3 (no real
S3 can run here). The loaders reach it exactly as they reach AWS, MinIO or any other store: boto3 over
HTTP, configured by the standard AWS variables (`S3Emulator.env`); nothing in the code under test knows
it is an emulator.

moto keeps its objects in this process, so the server can be stopped (the store unreachable) and started
again on the same port with every object still there.
"""

from __future__ import annotations

import logging
import uuid

from testkit.fixtures import free_port

REGION = "us-east-1"


class S3Emulator:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (any process) at the emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "emulator",
            "AWS_SECRET_ACCESS_KEY": "emulator",
            "AWS_REGION": REGION,
        }

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Stop serving (connections are refused); the objects stay for `start`."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **self._keys())

    def _keys(self) -> dict[str, str]:
        return {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}

    def new_bucket(self) -> str:
        name = f"forms-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def seed(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Many objects at once, written straight into the emulator's store rather than over HTTP (test
        set-up only: a thousand PUTs through the emulator cost half a minute on this machine). The code
        under test still lists and fetches them over HTTP."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key, body in objects.items():
            backend.put_object(bucket, key, body)
