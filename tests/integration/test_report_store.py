"""The report stores behind one port: the folder (local) and Azure Blob Storage (Azurite), same behaviour.

Each behaviour test runs against both stores: reports land where the returned location says, with content
types an operator's browser honours, the folder/container is made on first use and reuse is harmless, names
are checked, and an unusable target is an error naming the target and the setting that chose it. The last
tests run the stale sweep (on the fakes of tests/unit) with its reports in Azurite.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from shared.adapters.reports import BlobReportStore, LocalFolderReportStore, blob_name
from shared.adapters.templates import StaleTemplates
from shared.domain.directory import DirectoryContact, DirectoryUser, SignInActivity
from shared.domain.stale import StalePolicy
from shared.ports.reports import ReportStore, ReportStoreError
from shared.services.stale import StaleConfig, StaleDeps, sweep_stale_guests
from tests.fakes.state import MemoryStateStore
from tests.fixtures.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from tests.fixtures.azurite_blob import AzuriteBlob
from tests.unit.fakes_stale import FakeStaleGraph

RUN = "20261123T020000Z-a1b2c3"
CSV = "runId,action\r\n20261123T020000Z-a1b2c3,warn\r\n".encode("utf-8-sig")
HTML = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>r</title></head><body>Gr\xc3\xbc\xc3\x9fe</body></html>"
)
DEAD_ENDPOINT = f"http://127.0.0.1:9/{ACCOUNT_NAME}"


def key() -> AzureNamedKeyCredential:
    return AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY)


@dataclass
class Target:
    """One store under test, and how to look at what it wrote without going through it."""

    kind: str
    store: ReportStore
    another: Callable[[], ReportStore]
    """A second store on the same folder/container (another worker, tomorrow's run)."""
    opened: Callable[[str], Awaitable[tuple[bytes, str]]]
    """A returned location -> (content, content type as an operator's browser would get it)."""
    exists: Callable[[], Awaitable[bool]]
    listing: Callable[[], Awaitable[list[str]]]
    """What is stored, relative to the folder/container, sorted."""


def folder_target(folder: Path) -> Target:
    async def opened(location: str) -> tuple[bytes, str]:
        path = Path(location)
        content = path.read_bytes()  # noqa: ASYNC240 - a test reading a small file
        return content, str(mimetypes.guess_type(path.name)[0])

    async def exists() -> bool:
        return folder.is_dir()  # noqa: ASYNC240 - a test looking at a folder

    async def listing() -> list[str]:
        files = folder.rglob("*")  # noqa: ASYNC240 - a test listing a small folder
        return sorted(p.relative_to(folder).as_posix() for p in files if p.is_file())

    return Target(
        "folder", LocalFolderReportStore(folder), lambda: LocalFolderReportStore(folder), opened, exists, listing
    )


def blob_target(azurite: AzuriteBlob, container: str) -> Target:
    def store() -> BlobReportStore:
        return BlobReportStore.from_connection_string(azurite.connection_string, container)

    async def opened(location: str) -> tuple[bytes, str]:
        async with BlobClient.from_blob_url(location, credential=key()) as blob:
            content = await (await blob.download_blob()).readall()
            properties = await blob.get_blob_properties()
        return content, str(properties.content_settings.content_type)

    async def exists() -> bool:
        async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            return bool(await service.get_container_client(container).exists())

    async def listing() -> list[str]:
        async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
            return sorted([name async for name in service.get_container_client(container).list_blob_names()])

    return Target("blob", store(), store, opened, exists, listing)


def unique_container() -> str:
    return f"reports-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["folder", pytest.param("blob", marks=pytest.mark.azurite)])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "folder":
        yield folder_target(tmp_path / "out" / "reports")
        return
    azurite: AzuriteBlob = request.getfixturevalue("azurite_blob")
    container = unique_container()
    yield blob_target(azurite, container)
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        if await service.get_container_client(container).exists():
            await service.delete_container(container)


# --------------------------------------------------------------------------------------------------------
# the same behaviour, both stores
# --------------------------------------------------------------------------------------------------------


async def test_csv_and_html_land_where_the_returned_location_says_with_their_content_types(target: Target) -> None:
    csv_at = await target.store.write(f"stale-{RUN}.csv", CSV, "text/csv")
    html_at = await target.store.write(f"stale-{RUN}.html", HTML, "text/html")

    assert await target.opened(csv_at) == (CSV, "text/csv")
    assert await target.opened(html_at) == (HTML, "text/html")
    assert csv_at.endswith(f"stale-{RUN}.csv") and html_at.endswith(f"stale-{RUN}.html")
    # One run's reports sit together.
    assert csv_at.rsplit("/", 1)[0] == html_at.rsplit("/", 1)[0]


async def test_a_stored_report_reads_back_by_its_name_and_a_missing_one_is_an_error(target: Target) -> None:
    await target.store.write_stream(f"stale-{RUN}.html", _chunks(HTML), "text/html")

    assert await target.store.read(f"stale-{RUN}.html") == HTML  # the dashboard serves it from here
    with pytest.raises(ReportStoreError, match="could not be read"):
        await target.store.read("stale-20991231T000000Z-ffffff.html")
    with pytest.raises(ValueError):
        await target.store.read("../secrets.html")


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), 7):
        yield content[start : start + 7]


async def test_names_keep_the_run_together(target: Target) -> None:
    other = "20261124T020000Z-d4e5f6"
    for run in (RUN, other):
        await target.store.write(f"stale-{run}.csv", CSV, "text/csv")
        await target.store.write(f"stale-{run}.html", HTML, "text/html")
    if target.kind == "folder":  # a flat folder of self-describing names
        expected = [f"stale-{run}.{ext}" for run in (RUN, other) for ext in ("csv", "html")]
    else:  # blobs under a run-id prefix, runs in time order
        expected = [f"stale/{run}/stale-{run}.{ext}" for run in (RUN, other) for ext in ("csv", "html")]
    assert await target.listing() == expected


async def test_the_folder_or_container_is_made_on_first_write_and_reuse_is_harmless(target: Target) -> None:
    assert not await target.exists()
    await target.store.write(f"stale-{RUN}.csv", CSV, "text/csv")
    assert await target.exists()

    # Another store on the now existing target, then the first one again: a rerun overwrites its own report.
    await target.another().write(f"stale-{RUN}.html", HTML, "text/html")
    rewritten = await target.store.write(f"stale-{RUN}.csv", b"second", "text/csv")
    assert await target.opened(rewritten) == (b"second", "text/csv")
    assert len(await target.listing()) == 2


@pytest.mark.parametrize("name", ["", "../stale-x.csv", "a/b.csv", ".hidden.csv", "stale x.csv", "x" * 202])
async def test_names_that_are_not_plain_file_names_are_refused(target: Target, name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        await target.store.write(name, CSV, "text/csv")
    assert not await target.exists() or await target.listing() == []


# --------------------------------------------------------------------------------------------------------
# unusable targets: one clear error, naming the target and the setting
# --------------------------------------------------------------------------------------------------------


def _dead_folder(tmp_path: Path, azurite: AzuriteBlob | None) -> tuple[ReportStore, list[str]]:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the report folder should be")
    folder = blocker / "reports"
    return LocalFolderReportStore(folder), ["STALE_REPORT_DIR", str(folder)]


def _dead_endpoint(tmp_path: Path, azurite: AzuriteBlob | None) -> tuple[ReportStore, list[str]]:
    connection = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
    connection += f"BlobEndpoint={DEAD_ENDPOINT};"
    store = BlobReportStore.from_connection_string(connection, "nowhere", retries=0)
    return store, ["REPORT_BLOB_CONNECTION", DEAD_ENDPOINT, "container nowhere"]


def _wrong_key(tmp_path: Path, azurite: AzuriteBlob | None) -> tuple[ReportStore, list[str]]:
    assert azurite is not None
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, "d3Jvbmcga2V5" * 4 + "d3Jvbmc=")
    store = BlobReportStore.from_connection_string(wrong, unique_container(), retries=0)
    return store, ["REPORT_BLOB_CONNECTION", azurite.blob_endpoint, "refused", "Storage Blob Data Contributor"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_dead_folder, id="folder-blocked-by-a-file"),
        pytest.param(_dead_endpoint, id="blob-unreachable"),
        pytest.param(_wrong_key, id="blob-wrong-key", marks=pytest.mark.azurite),
    ],
)
async def test_an_unusable_target_is_an_error_naming_the_setting_and_the_target(
    make: Callable[[Path, AzuriteBlob | None], tuple[ReportStore, list[str]]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    azurite = request.getfixturevalue("azurite_blob") if make is _wrong_key else None
    store, named = make(tmp_path, azurite)
    with pytest.raises(ReportStoreError) as caught:
        await store.write(f"stale-{RUN}.csv", CSV, "text/csv")
    message = str(caught.value)
    assert isinstance(caught.value, OSError)  # the sweep logs OSErrors and still audits the run
    assert f"stale-{RUN}.csv" in message
    for part in named:
        assert part in message, (part, message)
    assert ACCOUNT_KEY not in message


@pytest.mark.parametrize("connection", ["not a connection string", "AccountKey=c2VjcmV0LWtleQ=="])
def test_a_malformed_connection_string_fails_at_construction_naming_the_setting(connection: str) -> None:
    with pytest.raises(ReportStoreError, match="REPORT_BLOB_CONNECTION is not a usable") as caught:
        BlobReportStore.from_connection_string(connection)
    assert connection not in str(caught.value)


@pytest.mark.parametrize("container", ["ab", "Reports", "a--b", "-ab", "ab-", "a_b", "a" * 64])
def test_container_names_follow_azure_rules(container: str) -> None:
    with pytest.raises(ValueError, match="container name"):
        BlobReportStore.from_connection_string("UseDevelopmentStorage=true", container)


def test_blob_names_put_a_run_under_its_own_prefix() -> None:
    assert blob_name(f"stale-{RUN}.csv") == f"stale/{RUN}/stale-{RUN}.csv"
    assert blob_name("summary.csv") == "summary.csv"


@pytest.mark.azurite
async def test_account_url_with_a_credential_made_per_write(azurite_blob: AzuriteBlob) -> None:
    """The managed-identity path (account URL + a credential factory); Azurite takes a shared key over http."""
    made: list[AzureNamedKeyCredential] = []

    def credential() -> AzureNamedKeyCredential:
        made.append(key())
        return made[-1]

    store = BlobReportStore.from_account_url(azurite_blob.blob_endpoint, credential, unique_container())
    csv_at = await store.write(f"stale-{RUN}.csv", CSV, "text/csv")
    html_at = await store.write(f"stale-{RUN}.html", HTML, "text/html")
    assert csv_at.startswith(f"{azurite_blob.blob_endpoint}/{store.container}/stale/{RUN}/")
    assert await blob_target(azurite_blob, store.container).opened(html_at) == (HTML, "text/html")
    assert len(made) == 2  # nothing outlives a write


class ClosingCredential:
    """An async token credential that counts its closes (the store must close what it made)."""

    closed = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise ClientAuthenticationError("no managed identity here")  # as DefaultAzureCredential off Azure

    async def close(self) -> None:
        ClosingCredential.closed += 1

    async def __aenter__(self) -> ClosingCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()


async def test_a_token_credential_is_closed_after_the_write_even_when_it_fails() -> None:
    ClosingCredential.closed = 0
    store = BlobReportStore.from_account_url(
        "https://127.0.0.1:9/devstoreaccount1",
        ClosingCredential,
        "nowhere",
        retries=0,
    )
    with pytest.raises(ReportStoreError, match=r"refused by container nowhere at .*REPORT_BLOB_ACCOUNT_URL"):
        await store.write(f"stale-{RUN}.csv", CSV, "text/csv")
    assert ClosingCredential.closed == 1


# --------------------------------------------------------------------------------------------------------
# the stale sweep writing to Azurite
# --------------------------------------------------------------------------------------------------------

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def guest(user_id: str, days_inactive: float) -> DirectoryUser:
    stamp = START - timedelta(days=days_inactive)
    return DirectoryUser(
        id=user_id,
        display_name=f'=HYPERLINK("x") {user_id}' if user_id == "stale-2" else user_id,
        user_type="Guest",
        mail=f"{user_id}@fabrikam.com",
        user_principal_name=f"{user_id}_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        external_user_state="Accepted",
        external_user_state_changed=START - timedelta(days=400),
        created=START - timedelta(days=400),
        account_enabled=True,
        sign_in_activity=SignInActivity(stamp, stamp, stamp),
    )


def sweep_deps(reports: ReportStore) -> StaleDeps:
    graph = FakeStaleGraph([guest("stale-1", 200), guest("stale-2", 200), guest("active", 3)])
    graph.sponsors["stale-1"] = [DirectoryContact("s1", "Adele", "adele@contoso.com")]
    return StaleDeps(
        # the fake implements what the sweep calls, not the partitioned-scan methods (count_guests, guest_span,
        # get_users) nor iter_guest_pages' select=: StaleGraph is wider than this use of it
        graph=graph,  # type: ignore[arg-type]
        state=MemoryStateStore(clock=lambda: START),
        reports=reports,
        templates=StaleTemplates(),
        policy=StalePolicy(),
        config=StaleConfig(dry_run=False, max_actions=100, max_percent=100, mail_sender="guestwarden@contoso.com"),
        clock=lambda: START,
    )


async def run_audit(deps: StaleDeps) -> dict[str, Any]:
    entries = [e async for e in deps.state.query(START - timedelta(days=1)) if e.action == "stale-run"]
    assert len(entries) == 1
    return dict(entries[0].evidence)


@pytest.mark.azurite
async def test_a_stale_sweep_writes_its_reports_to_blob_storage(azurite_blob: AzuriteBlob) -> None:
    container = unique_container()
    deps = sweep_deps(BlobReportStore.from_connection_string(azurite_blob.connection_string, container))
    plan = await sweep_stale_guests(deps, run_id=RUN)

    assert plan.status == "applied"
    prefix = f"{azurite_blob.blob_endpoint}/{container}/stale/{RUN}/"
    assert plan.reports == [f"{prefix}stale-{RUN}.csv", f"{prefix}stale-{RUN}.html"]
    look = blob_target(azurite_blob, container)
    listing = await look.listing()
    assert [n for n in listing if "/parts/" not in n] == [
        f"stale/{RUN}/stale-{RUN}.csv",
        f"stale/{RUN}/stale-{RUN}.html",
    ]
    # the plan, page by page, next to the reports: as read (plan-) and as acted on (acted-)
    assert {n.rsplit("/", 1)[1].split("-")[0] for n in listing if f"stale/{RUN}/parts/" in n} == {"plan", "acted"}

    csv_bytes, csv_type = await look.opened(plan.reports[0])
    html_bytes, html_type = await look.opened(plan.reports[1])
    assert (csv_type, html_type) == ("text/csv", "text/html")
    csv_text = csv_bytes.decode("utf-8-sig")
    assert ",warn,done,stale-1," in csv_text and ",warn,done,stale-2," in csv_text and ",active," not in csv_text
    assert "'=HYPERLINK" in csv_text  # formula-safe, as written by the service
    html = html_bytes.decode()
    assert RUN in html and "fabrikam.com" in html and "=HYPERLINK(&#34;x&#34;)" in html
    assert (await run_audit(deps))["reports"] == plan.reports


async def test_a_sweep_whose_blob_store_is_unreachable_changes_nothing_and_names_the_setting() -> None:
    """The plan is kept in the report store page by page: without it there is no plan to act on, so the run
    stops before its first action, with an error naming the store and its setting, and continues later."""
    connection = f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};BlobEndpoint={DEAD_ENDPOINT};"
    deps = sweep_deps(BlobReportStore.from_connection_string(connection, "nowhere", retries=0))
    with pytest.raises(ReportStoreError, match="REPORT_BLOB_CONNECTION"):
        await sweep_stale_guests(deps, run_id=RUN)
    graph = deps.graph
    assert isinstance(graph, FakeStaleGraph) and graph.writes == [] and graph.outbox == []
    assert [e async for e in deps.state.query(START - timedelta(days=1))] == []
