"""REPORT_STORE and the REPORT_BLOB_* settings, and the report store bootstrap builds from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.adapters.reports import BlobReportStore, LocalFolderReportStore
from shared.bootstrap import build_report_store, stale_deps
from shared.settings import Feature, SettingsError, load_settings

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0LWtleS1uZXZlci1lY2hvZWQ=;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
STALE = [Feature.STALE]


def test_reports_go_to_the_folder_by_default(tmp_path: Path) -> None:
    settings = load_settings({"STALE_REPORT_DIR": str(tmp_path)}, STALE)
    assert settings.reports.store == "folder" and settings.reports.blob_container == "guestwarden-reports"
    store = build_report_store(settings)
    assert isinstance(store, LocalFolderReportStore) and store.folder == tmp_path


def test_blob_by_connection_string() -> None:
    settings = load_settings(
        {"REPORT_STORE": "blob", "REPORT_BLOB_CONNECTION": AZURITE, "REPORT_BLOB_CONTAINER": "sweep-reports"}, STALE
    )
    store = build_report_store(settings)
    assert isinstance(store, BlobReportStore)
    assert (store.container, store.setting) == ("sweep-reports", "REPORT_BLOB_CONNECTION")
    assert store.endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert "c2VjcmV0" not in store.target


def test_blob_by_account_url_and_managed_identity() -> None:
    settings = load_settings(
        {"REPORT_STORE": "blob", "REPORT_BLOB_ACCOUNT_URL": "https://contosoreports.blob.core.windows.net"}, STALE
    )
    store = build_report_store(settings)
    assert isinstance(store, BlobReportStore)
    assert store.setting == "REPORT_BLOB_ACCOUNT_URL"
    assert store.target == (
        "container guestwarden-reports at https://contosoreports.blob.core.windows.net (REPORT_BLOB_ACCOUNT_URL)"
    )


def test_the_connection_string_wins_over_the_account_url() -> None:
    env = {
        "REPORT_STORE": "blob",
        "REPORT_BLOB_CONNECTION": AZURITE,
        "REPORT_BLOB_ACCOUNT_URL": "https://contosoreports.blob.core.windows.net",
    }
    store = build_report_store(load_settings(env, STALE))
    assert isinstance(store, BlobReportStore) and store.setting == "REPORT_BLOB_CONNECTION"


def test_stale_deps_take_the_store_the_settings_choose() -> None:
    settings = load_settings({"REPORT_STORE": "blob", "REPORT_BLOB_CONNECTION": AZURITE}, STALE)
    graph: Any = object()
    state: Any = object()
    assert isinstance(stale_deps(settings, graph, state).reports, BlobReportStore)


def test_blob_needs_a_connection_or_an_account_url_when_the_sweep_runs() -> None:
    with pytest.raises(SettingsError, match="REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL: one is required"):
        load_settings({"REPORT_STORE": "blob"}, STALE)
    load_settings({"REPORT_STORE": "blob"}, [Feature.GRAPH])  # features decide what is required


def test_report_store_is_folder_or_blob() -> None:
    with pytest.raises(SettingsError, match="REPORT_STORE"):
        load_settings({"REPORT_STORE": "s3"}, STALE)


@pytest.mark.parametrize("name", ["ab", "Reports", "a--b", "-ab", "ab-", "a_b", "a.b", "a" * 64])
def test_the_container_name_follows_azure_rules(name: str) -> None:
    with pytest.raises(SettingsError, match="REPORT_BLOB_CONTAINER: expected a container name"):
        load_settings({"REPORT_BLOB_CONTAINER": name}, STALE)


@pytest.mark.parametrize("name", ["abc", "guestwarden-reports", "r2-d2", "a" * 63, "0reports9"])
def test_good_container_names_pass(name: str) -> None:
    assert load_settings({"REPORT_BLOB_CONTAINER": name}, STALE).reports.blob_container == name


@pytest.mark.parametrize(
    "url",
    ["http://contoso.blob.core.windows.net", "contoso.blob.core.windows.net", "https://x.blob.core.windows.net?sv=1"],
)
def test_the_account_url_is_https_except_a_loopback_emulator(url: str) -> None:
    with pytest.raises(SettingsError, match="REPORT_BLOB_ACCOUNT_URL: expected https://"):
        load_settings({"REPORT_BLOB_ACCOUNT_URL": url}, STALE)
    local = "http://127.0.0.1:10000/devstoreaccount1"
    assert load_settings({"REPORT_BLOB_ACCOUNT_URL": local}, STALE).reports.blob_account_url == local


def test_a_bad_connection_string_is_named_but_never_echoed() -> None:
    secret = "AccountKey=c2VjcmV0LWtleS1uZXZlci1lY2hvZWQ="
    with pytest.raises(SettingsError, match="REPORT_BLOB_CONNECTION: expected a Blob Storage connection") as caught:
        load_settings({"REPORT_STORE": "blob", "REPORT_BLOB_CONNECTION": secret}, STALE)
    assert "c2VjcmV0" not in str(caught.value)
