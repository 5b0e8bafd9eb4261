"""Project files in S3: ``s3://<bucket>/<prefix><projectId>/<relative path>``."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from .clients import error_code

CHUNK_BYTES = 1024 * 1024
DELETE_BATCH = 1000
# Above this a single PUT gets slow to retry; boto3's managed transfer goes multipart.
MULTIPART_FROM_BYTES = 64 * 1024 * 1024
# Object metadata holding a file's permission bits (octal), so `chmod +x` survives S3.
MODE_METADATA = "mode"


class StorageError(Exception):
    """S3 refused or failed a call, after the client's own retries."""


def _wrap(action: str, exc: Exception) -> StorageError:
    code = error_code(exc)
    return StorageError(f"{action} failed: {code + ': ' if code else ''}{exc}")


class ProjectStorage:
    """Blocking S3 calls for one bucket; the workspace runs them in worker threads."""

    def __init__(self, client, bucket: str, prefix: str):
        self._client = client
        self.bucket = bucket
        self.prefix = prefix

    def project_prefix(self, project_id: str) -> str:
        return f"{self.prefix}{project_id}/"

    def list_etags(self, project_id: str) -> dict[str, str]:
        """Relative key -> ETag of every object of the project."""
        prefix = self.project_prefix(project_id)
        etags: dict[str, str] = {}
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    etags[item["Key"][len(prefix):]] = item["ETag"]
        except (ClientError, BotoCoreError) as exc:
            raise _wrap(f"listing s3://{self.bucket}/{prefix}", exc) from exc
        return etags

    def download(self, project_id: str, relative: str, write) -> tuple[str, int | None]:
        """Stream an object into ``write(chunk)``; return its ETag and file mode, if kept."""
        key = self.project_prefix(project_id) + relative
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    write(chunk)
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise _wrap(f"downloading {key}", exc) from exc
        mode = response.get("Metadata", {}).get(MODE_METADATA, "")
        return response["ETag"], int(mode, 8) if mode.isdigit() else None

    def upload(self, project_id: str, relative: str, fileobj, size: int, mode: int) -> str:
        """Put a file's contents, with its mode as metadata; return the new ETag."""
        key = self.project_prefix(project_id) + relative
        metadata = {MODE_METADATA: f"{mode:o}"}
        try:
            if size < MULTIPART_FROM_BYTES:
                return self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=fileobj, Metadata=metadata
                )["ETag"]
            self._client.upload_fileobj(
                fileobj, self.bucket, key, ExtraArgs={"Metadata": metadata}
            )
            return self._client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except (ClientError, BotoCoreError) as exc:
            raise _wrap(f"uploading {key}", exc) from exc

    def delete(self, project_id: str, relatives: list[str]) -> None:
        prefix = self.project_prefix(project_id)
        for start in range(0, len(relatives), DELETE_BATCH):
            batch = relatives[start:start + DELETE_BATCH]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": prefix + r} for r in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                raise _wrap(f"deleting {len(batch)} keys under {prefix}", exc) from exc
            if response.get("Errors"):
                first = response["Errors"][0]
                raise StorageError(
                    f"deleting {first.get('Key')} failed: {first.get('Code')}: "
                    f"{first.get('Message')}"
                )
