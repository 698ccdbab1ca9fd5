"""The operator dashboard's Entra app registration, for azd's hooks (azure.yaml; docs/deploy.md, "The operator
dashboard").

Bicep cannot create app registrations (only with the Microsoft Graph Bicep extension, which this template does not
use), and the local Graph simulator has no /applications, so this applies infra/dashboard-app.json with the Azure
CLI (`az ad ...`), which the deploy already needs. Standard library only: azd runs it with the system Python.

- `ensure` (preprovision): the registration exists with the manifest's app roles and ID token issuance, and its
  client id is in the azd environment as DASHBOARD_CLIENT_ID (the `dashboardClientId` parameter of infra/).
  A DASHBOARD_CLIENT_ID already set names a registration you made: it gets the manifest too.
- `finish` (postprovision, once the app's host name and identity exist): the sign-in callback as a web redirect
  URI; a federated identity credential that lets the app's user-assigned identity stand in for a client secret
  (App Service Authentication's `OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID`,
  https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview);
  the enterprise application (service principal) with "assignment required", so only people given an app role
  can sign in at all.

`DASHBOARD_SIGN_IN=off` in the azd environment skips both: infra then configures no App Service Authentication
and the dashboard answers 503 in Azure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parents[1] / "infra" / "dashboard-app.json"

Run = Callable[[Sequence[str]], str]
"""Runs a command (`az ...`, `azd ...`) and returns its standard output; raises on a non-zero exit."""


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def display_name(env_name: str) -> str:
    return f"guestwarden-dashboard-{env_name}"


def redirect_uri(manifest: Mapping[str, Any], host_name: str) -> str:
    """App Service Authentication's Entra callback on the app's host."""
    return f"https://{host_name}{manifest['redirectUriPath']}"


def federated_credential(manifest: Mapping[str, Any], tenant_id: str, principal_id: str) -> dict[str, Any]:
    """The app registration trusts tokens the managed identity gets for api://AzureADTokenExchange
    (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity)."""
    spec = manifest["federatedCredential"]
    return {
        "name": spec["name"],
        "description": spec["description"],
        "issuer": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        "subject": principal_id,
        "audiences": list(spec["audiences"]),
    }


def default_run(args: Sequence[str]) -> str:
    executable = shutil.which(args[0]) or args[0]  # az.cmd / azd.exe on Windows
    result = subprocess.run([executable, *args[1:]], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ...: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def _json_file(value: object, folder: str, name: str) -> str:
    """`@path` for az: JSON through a file, not the command line (cmd.exe would mangle its quotes)."""
    path = Path(folder) / name
    path.write_text(json.dumps(value))
    return f"@{path}"


def _env_value(run: Run, env: Mapping[str, str], name: str) -> str:
    if env.get(name):
        return env[name]
    try:
        return run(["azd", "env", "get-value", name])
    except RuntimeError:
        return ""  # not set in the azd environment


def ensure(run: Run, env: Mapping[str, str], manifest: Mapping[str, Any]) -> str:
    """The registration's client id (created when DASHBOARD_CLIENT_ID is unset), with the manifest applied."""
    if _env_value(run, env, "DASHBOARD_SIGN_IN").lower() == "off":
        print("dashboard sign-in: off (DASHBOARD_SIGN_IN=off); the dashboard answers 503 in Azure")
        return ""
    name = display_name(env.get("AZURE_ENV_NAME") or _env_value(run, env, "AZURE_ENV_NAME"))
    client_id = _env_value(run, env, "DASHBOARD_CLIENT_ID")
    with tempfile.TemporaryDirectory() as folder:
        roles = _json_file(manifest["appRoles"], folder, "roles.json")
        id_tokens = str(bool(manifest["enableIdTokenIssuance"])).lower()
        if not client_id:
            found = run(["az", "ad", "app", "list", "--display-name", name, "--query", "[].appId", "-o", "tsv"])
            client_id = found.split()[0] if found.split() else ""
        if client_id:
            run(["az", "ad", "app", "update", "--id", client_id, "--app-roles", roles])
            run(["az", "ad", "app", "update", "--id", client_id, "--enable-id-token-issuance", id_tokens])
            print(f"dashboard sign-in: app registration {client_id} updated")
        else:
            client_id = run(
                [
                    "az", "ad", "app", "create",
                    "--display-name", name,
                    "--sign-in-audience", manifest["signInAudience"],
                    "--enable-id-token-issuance", id_tokens,
                    "--app-roles", roles,
                    "--query", "appId", "-o", "tsv",
                ]
            )  # fmt: skip
            print(f"dashboard sign-in: app registration {name} created ({client_id})")
    run(["azd", "env", "set", "DASHBOARD_CLIENT_ID", client_id])
    return client_id


def finish(run: Run, env: Mapping[str, str], manifest: Mapping[str, Any]) -> None:
    """Redirect URI, federated credential and the enterprise application, once infra has run."""
    client_id = _env_value(run, env, "DASHBOARD_CLIENT_ID")
    if _env_value(run, env, "DASHBOARD_SIGN_IN").lower() == "off" or not client_id:
        print("dashboard sign-in: off; nothing to finish")
        return
    host_name = _env_value(run, env, "AZURE_FUNCTION_APP_HOST_NAME")
    principal_id = _env_value(run, env, "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID")
    if not host_name or not principal_id:
        raise RuntimeError("AZURE_FUNCTION_APP_HOST_NAME / AZURE_MANAGED_IDENTITY_PRINCIPAL_ID: run after provision")
    tenant_id = env.get("AZURE_TENANT_ID") or run(["az", "account", "show", "--query", "tenantId", "-o", "tsv"])
    # keep redirect URIs added by hand (a custom domain's callback)
    current = json.loads(run(["az", "ad", "app", "show", "--id", client_id, "--query", "web.redirectUris"]) or "[]")
    wanted = redirect_uri(manifest, host_name)
    if wanted not in (current or []):
        run(["az", "ad", "app", "update", "--id", client_id, "--web-redirect-uris", *(current or []), wanted])
    credential = federated_credential(manifest, tenant_id, principal_id)
    with tempfile.TemporaryDirectory() as folder:
        parameters = _json_file(credential, folder, "credential.json")
        names = json.loads(
            run(["az", "ad", "app", "federated-credential", "list", "--id", client_id, "--query", "[].name"]) or "[]"
        )
        if credential["name"] in (names or []):
            run(
                [
                    "az", "ad", "app", "federated-credential", "update", "--id", client_id,
                    "--federated-credential-id", credential["name"], "--parameters", parameters,
                ]
            )  # fmt: skip
        else:
            run(["az", "ad", "app", "federated-credential", "create", "--id", client_id, "--parameters", parameters])
    service_principal = run(
        ["az", "ad", "sp", "list", "--filter", f"appId eq '{client_id}'", "--query", "[].id", "-o", "tsv"]
    )
    if not service_principal:
        run(["az", "ad", "sp", "create", "--id", client_id, "--query", "id", "-o", "tsv"])
    required = str(bool(manifest["appRoleAssignmentRequired"])).lower()
    run(["az", "ad", "sp", "update", "--id", client_id, "--set", f"appRoleAssignmentRequired={required}"])
    print(f"dashboard sign-in: {wanted} registered; assign people to the app roles (docs/deploy.md)")


def main(argv: Sequence[str] = tuple(sys.argv[1:])) -> int:
    if list(argv) not in (["ensure"], ["finish"]):
        print("usage: python tools/dashboard_app.py ensure|finish", file=sys.stderr)
        return 2
    try:
        if argv[0] == "ensure":
            ensure(default_run, os.environ, load_manifest())
        else:
            finish(default_run, os.environ, load_manifest())
    except RuntimeError as error:
        print(f"dashboard sign-in: {error}", file=sys.stderr)
        print("see docs/deploy.md, 'The operator dashboard' (DASHBOARD_CLIENT_ID, DASHBOARD_SIGN_IN)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
