"""The report port: where the stale sweep's CSV and HTML reports go.

`LocalFolderReportStore` writes to a folder (local runs, the CLI, a mounted share; STALE_REPORT_DIR).
`BlobReportStore` writes to an Azure Blob Storage container (Azure; REPORT_STORE=blob), by connection string
(Azurite, key-based accounts) or by account URL with the Function App's managed identity, which needs
Storage Blob Data Contributor on the account (or on the container, if infra creates it).

Report names are plain file names of the form `<report>-<run id>.<ext>` (the sweep writes
`stale-<run id>.csv` and `stale-<run id>.html`). The folder store keeps them side by side; the blob store puts
each under `<report>/<run id>/`, so one run's files sit together and runs list in time order (run ids start
with their UTC start time). A run's parts (its plan, page by page) go to `<folder>/<report>-<run id>.parts/`
or `<report>/<run id>/parts/`, next to its reports, and age with them.

Reports are streamed (`write_stream`): the folder store writes a temporary file chunk by chunk and renames it
into place; the blob store hands the chunks to the SDK, which uploads them as blocks and commits the list at
the end, so a report is never whole in memory and never half there.

Both stores raise `ReportStoreError` (an `OSError`, which the sweep logs without losing its audit entry) naming
the target and the setting that chose it, so an operator knows what to fix.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from shared.ports.reports import ReportStore, ReportStoreError

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.storage.blob.aio import BlobServiceClient

    BlobCredential: TypeAlias = AsyncTokenCredential | AzureNamedKeyCredential

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_REPORT_NAME = re.compile(r"^(?P<report>[A-Za-z0-9]+)-(?P<run>[A-Za-z0-9][A-Za-z0-9._-]*)\.[A-Za-z0-9]+$")
CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
"""Azure's container naming rules: 3-63 characters, lower-case letters, digits and single hyphens between them."""
DEFAULT_CONTAINER = "guestwarden-reports"


def check_report_name(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"report name {name!r} is not a plain file name")
    return name


class LocalFolderReportStore(ReportStore):
    def __init__(self, folder: Path, *, setting: str = "STALE_REPORT_DIR") -> None:
        self.folder = folder
        self.setting = setting

    async def write(self, name: str, content: bytes, content_type: str) -> str:
        path = self.folder / check_report_name(name)
        try:
            await asyncio.to_thread(_replace, path, content)
        except OSError as exc:
            raise ReportStoreError(
                f"report {name} could not be written to folder {self.folder} ({self.setting}): {exc}"
            ) from exc
        return str(path)

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes], content_type: str) -> str:
        path = self.folder / check_report_name(name)
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
            handle = await asyncio.to_thread(tmp.open, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(tmp.replace, path)
        except OSError as exc:
            raise ReportStoreError(
                f"report {name} could not be written to folder {self.folder} ({self.setting}): {exc}"
            ) from exc
        finally:
            if tmp.exists():
                tmp.unlink()
        return str(path)

    async def read(self, name: str) -> bytes:
        return await self._read(self.folder / check_report_name(name), "report")

    def _part(self, report: str, name: str) -> Path:
        return self.folder / f"{check_report_name(report)}.parts" / check_report_name(name)

    async def put_part(self, report: str, name: str, content: bytes) -> None:
        path = self._part(report, name)
        try:
            await asyncio.to_thread(_replace, path, content)
        except OSError as exc:
            raise ReportStoreError(f"part {path} could not be written ({self.setting}): {exc}") from exc

    async def get_part(self, report: str, name: str) -> bytes:
        return await self._read(self._part(report, name), "part")

    async def _read(self, path: Path, what: str) -> bytes:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise ReportStoreError(f"{what} {path} could not be read ({self.setting}): {exc}") from exc


def _replace(path: Path, content: bytes) -> None:
    """Write a file whole or not at all: a temporary file renamed into place (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def blob_name(name: str) -> str:
    """`stale-<run id>.csv` -> `stale/<run id>/stale-<run id>.csv`; a name without a run id stays as it is."""
    match = _REPORT_NAME.fullmatch(check_report_name(name))
    return f"{match['report']}/{match['run']}/{name}" if match else name


class BlobReportStore(ReportStore):
    """Reports as blobs in one container (created on first write if missing), with their content type.

    Clients are opened per write and closed after it: the port has no close, the sweep writes two reports a
    night, and nothing (no aiohttp session, no credential) outlives the write or its event loop. Build it with
    `from_connection_string` or `from_account_url`.
    """

    def __init__(
        self,
        open_service: Callable[[], tuple[BlobServiceClient, BlobCredential | None]],
        *,
        container: str,
        endpoint: str,
        setting: str,
    ) -> None:
        if not CONTAINER_NAME.fullmatch(container):
            raise ValueError(
                f"container name {container!r} breaks Azure's rules (3-63 lower-case letters, digits and single "
                "hyphens, starting and ending with a letter or digit)"
            )
        self._open_service = open_service
        self.container = container
        self.endpoint = endpoint
        """The account's blob endpoint, without secrets: for messages."""
        self.setting = setting
        self._container_ready = False
        self._container_lock = asyncio.Lock()

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str = DEFAULT_CONTAINER,
        *,
        setting: str = "REPORT_BLOB_CONNECTION",
        retries: int = 3,
    ) -> BlobReportStore:
        """Key or SAS based (Azurite, accounts with shared keys). A malformed string fails here, not at 2 a.m."""
        from azure.storage.blob.aio import BlobServiceClient

        def open_service() -> tuple[BlobServiceClient, BlobCredential | None]:
            return BlobServiceClient.from_connection_string(connection_string, retry_total=retries), None

        try:
            probe, _ = open_service()  # parses only: the transport opens its session on the first request
        except ValueError as exc:
            raise ReportStoreError(f"{setting} is not a usable Blob Storage connection string: {exc}") from None
        endpoint = probe.url.split("?", 1)[0].rstrip("/")
        return cls(open_service, container=container, endpoint=endpoint, setting=setting)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        credential: Callable[[], BlobCredential],
        container: str = DEFAULT_CONTAINER,
        *,
        setting: str = "REPORT_BLOB_ACCOUNT_URL",
        retries: int = 3,
    ) -> BlobReportStore:
        """`https://<account>.blob.core.windows.net` with a credential made per write (in Azure:
        `managed_identity_credential(AZURE_CLIENT_ID)`); token credentials are closed after each write."""
        from azure.storage.blob.aio import BlobServiceClient

        def open_service() -> tuple[BlobServiceClient, BlobCredential | None]:
            made = credential()
            return BlobServiceClient(account_url, credential=made, retry_total=retries), made

        return cls(open_service, container=container, endpoint=account_url.rstrip("/"), setting=setting)

    @property
    def target(self) -> str:
        return f"container {self.container} at {self.endpoint} ({self.setting})"

    async def write(self, name: str, content: bytes, content_type: str) -> str:
        return await self._upload(blob_name(name), content, content_type, f"report {blob_name(name)}")

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes], content_type: str) -> str:
        # The SDK reads the chunks as it uploads them, as blocks committed at the end (no partial blob).
        return await self._upload(blob_name(name), chunks, content_type, f"report {blob_name(name)}")

    def _part_name(self, report: str, name: str) -> str:
        """`stale-<run id>` + name -> `stale/<run id>/parts/<name>`, next to the run's reports."""
        folder = blob_name(f"{check_report_name(report)}.parts").rsplit("/", 1)[0]
        return f"{folder}/parts/{check_report_name(name)}"

    async def put_part(self, report: str, name: str, content: bytes) -> None:
        path = self._part_name(report, name)
        await self._upload(path, content, "application/json", f"part {path}")

    async def get_part(self, report: str, name: str) -> bytes:
        return await self._download(self._part_name(report, name), "part")

    async def read(self, name: str) -> bytes:
        return await self._download(blob_name(name), "report")

    async def _download(self, path: str, what: str) -> bytes:
        from azure.core.exceptions import AzureError

        service, credential = self._open_service()
        try:
            async with service:
                downloader = await service.get_blob_client(self.container, path).download_blob()
                return bytes(await downloader.readall())
        except AzureError as exc:
            raise ReportStoreError(f"{what} {path} could not be read from {self.target}: {_first_line(exc)}") from exc
        finally:
            await _close(credential)

    async def _upload(self, path: str, content: bytes | AsyncIterable[bytes], content_type: str, what: str) -> str:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
        from azure.storage.blob import ContentSettings

        service, credential = self._open_service()
        try:
            async with service:
                await self._ensure_container(service)
                blob = service.get_blob_client(self.container, path)
                await blob.upload_blob(
                    content, overwrite=True, content_settings=ContentSettings(content_type=content_type)
                )
                return str(blob.url)
        except AzureError as exc:
            refused = isinstance(exc, ClientAuthenticationError) or (
                isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
            )
            if not refused:
                raise ReportStoreError(f"{what} could not be written to {self.target}: {_first_line(exc)}") from exc
            raise ReportStoreError(
                f"{what} was refused by {self.target}: check the key, or that the identity has Storage "
                f"Blob Data Contributor on the account ({_first_line(exc)})"
            ) from exc
        finally:
            await _close(credential)

    async def _ensure_container(self, service: BlobServiceClient) -> None:
        """Create the container once per store; "already exists" is success, and so is "not allowed to create"
        when the identity's role is scoped to a container that infra made (the upload then says if it is not)."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError

        if self._container_ready:
            return
        async with self._container_lock:
            if self._container_ready:
                return
            try:
                await service.create_container(self.container)
            except ResourceExistsError:
                pass
            except ClientAuthenticationError:
                raise
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
            self._container_ready = True


async def _close(credential: BlobCredential | None) -> None:
    from azure.core.credentials_async import AsyncTokenCredential

    if isinstance(credential, AsyncTokenCredential):
        await credential.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
