"""Offline checks of the deployment templates in infra/ (the Bicep CLI is not needed).

1. Every ``.bicep`` file parses with tree-sitter-bicep without error nodes.
2. Structural checks on the pycep-parser output: which roles the app's identity gets and at which
   scope, that app settings hold no secrets, that the template sets exactly the settings the app
   reads (``shared.core.settings.SETTINGS``), and the security properties the issue asks for.
3. ``checkov -d infra --framework bicep`` reports no failed check, and every suppression carries a
   reason and is listed in the deploy documentation.

A note on pycep's output: a reference to a parameter, variable or resource comes back as its bare
name, the same as a string literal would, so "is this a literal?" is answered by looking the
string up among the file's symbols.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
from pycep import BicepParser
from tree_sitter import Language, Parser

from shared.core.audience_health import WARNING_CODES
from shared.core.endings import EndReason
from shared.core.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# The roles the issue allows the app's identity, by id. Anything else in a role assignment fails.
ALLOWED_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Broad built-in roles that must never appear anywhere in infra/.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
}
# For each role: the resource types its assignment may be scoped to (the narrowest that works).
ROLE_SCOPES = {
    "Storage Blob Data Owner": {"Microsoft.Storage/storageAccounts"},  # runtime account: host
    "Storage Blob Data Contributor": {"Microsoft.Storage/storageAccounts/blobServices/containers"},
    "Storage Blob Data Reader": {
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts",  # only for an existing account with no container named
    },
    "Storage Queue Data Contributor": {"Microsoft.Storage/storageAccounts"},
    "Storage Table Data Contributor": {"Microsoft.Storage/storageAccounts"},
    "Key Vault Secrets User": {"Microsoft.KeyVault/vaults"},
    "Key Vault Secrets Officer": {"Microsoft.KeyVault/vaults/secrets"},  # never the whole vault
    "Monitoring Metrics Publisher": {"Microsoft.Insights/components"},
}

# App settings the template defines that the app's code does not read: the Functions host and
# the Application Insights agent read them. Every name here must be set by the template.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "host: use a managed identity for its storage",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Application Insights agent: where to send",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Application Insights agent: Entra ID auth",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "Python worker: export OpenTelemetry itself",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "the distribution: no generic HTTP spans",
}
# Settings the app reads (with a default) that the template deliberately leaves unset, with the
# reason. Empty: the template sets every one of them.
OPTIONAL_SETTINGS_LEFT_OUT: dict[str, str] = {
    "PUBLIC_URL": "defaults to https://$WEBSITE_HOSTNAME, which the platform sets; set it for "
    "a custom domain or a front door",
}

SECRET_MARKERS = ("AccountKey=", "SharedAccessSignature", "sig=", "listKeys", "listAccountSas")
SECRET_FUNCTIONS = ("list_keys", "list_account_sas", "list_service_sas", "listKeys", "listSecrets")


# ---------------------------------------------------------------- parsing helpers


@functools.cache
def parsed(relative: str) -> dict[str, Any]:
    """pycep's JSON for one template (path relative to infra/)."""
    result: dict[str, Any] = BicepParser().parse(text=(INFRA / relative).read_text("utf-8"))
    return result


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's declared body, looking through pycep's wrappers for loops and conditions."""
    config: dict[str, Any] = resource["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(relative: str, *, existing: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in parsed(relative).get("resources", {}).items():
        if resource["existing"] == existing:
            yield name, resource


def all_resources(*, existing: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in BICEP_FILES:
        relative = path.relative_to(INFRA).as_posix()
        for name, resource in resources(relative, existing=existing):
            yield relative, name, resource


def symbols(relative: str) -> set[str]:
    template = parsed(relative)
    return {
        name
        for section in ("parameters", "variables", "resources", "modules")
        for name in template.get(section, {})
    }


def is_literal(value: Any, relative: str) -> bool:
    """True for a plain string/number/bool that names nothing in the file and interpolates nothing."""
    if isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and "${" not in value and value not in symbols(relative)


def resolve(value: Any, relative: str) -> Any:
    """A parameter's default or a variable's value when ``value`` names one; else ``value``."""
    template = parsed(relative)
    if isinstance(value, str):
        if value in template.get("parameters", {}):
            return template["parameters"][value].get("default")
        if value in template.get("variables", {}):
            return template["variables"][value]["value"]
    return value


def object_variable(relative: str, name: str) -> dict[str, Any]:
    value = parsed(relative).get("variables", {}).get(name, {}).get("value")
    assert isinstance(value, dict), f"{relative}: expected `var {name} = {{...}}`"
    return value


def template_settings() -> dict[str, tuple[str, Any]]:
    """Every app setting the template defines: name -> (file, value expression)."""
    api = body(dict(resources("app/api.bicep"))["functionApp"])
    loop = json.dumps(api["properties"]["siteConfig"]["appSettings"])
    assert "allSettings" in loop, "api.bicep: siteConfig.appSettings must be built from allSettings"
    union = json.dumps(parsed("app/api.bicep")["variables"]["allSettings"]["value"])
    for part in ("platformSettings", "appSettings"):
        assert part in union, "api.bicep: allSettings must be union(platformSettings, appSettings)"
    passed = body(parsed("main.bicep")["modules"]["api"])["params"]["appSettings"]
    assert passed == "appSettings", "main.bicep: module api must get `appSettings: appSettings`"
    platform = object_variable("app/api.bicep", "platformSettings")
    app = object_variable("main.bicep", "appSettings")
    twice = set(platform) & set(app)
    assert not twice, f"set in both api.bicep and main.bicep (union hides one): {sorted(twice)}"
    settings = {name: ("app/api.bicep", value) for name, value in platform.items()}
    settings.update({name: ("main.bicep", value) for name, value in app.items()})
    return settings


# ---------------------------------------------------------------- 1. syntax


def test_infra_has_the_expected_files() -> None:
    for relative in (
        "main.bicep",
        "main.parameters.json",
        "abbreviations.json",
        "app/api.bicep",
        "app/rbac.bicep",
    ):
        assert (INFRA / relative).is_file(), f"infra/{relative} is missing"
    assert (ROOT / "azure.yaml").is_file()
    for name in ("main.parameters.json", "abbreviations.json"):
        json.loads((INFRA / name).read_text("utf-8"))


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses_with_tree_sitter(path: Path) -> None:
    tree = Parser(Language(tree_sitter_bicep.language())).parse(path.read_bytes())
    errors: list[str] = []

    def visit(node: Any) -> None:
        if node.is_error or node.is_missing:
            row, column = node.start_point
            errors.append(f"line {row + 1}, column {column + 1}: {node.type}")
        for child in node.children:
            visit(child)

    visit(tree.root_node)
    assert not tree.root_node.has_error, f"{path.name}: {errors}"


def test_every_module_path_exists() -> None:
    for path in BICEP_FILES:
        relative = path.relative_to(INFRA).as_posix()
        for name, module in parsed(relative).get("modules", {}).items():
            target = path.parent / module["detail"]["path"]
            assert target.is_file(), f"{relative}: module {name} points at missing {target}"


def test_parameters_file_matches_main_parameters() -> None:
    declared = parsed("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text("utf-8"))["parameters"]
    assert set(given) <= set(declared), f"unknown parameters: {sorted(set(given) - set(declared))}"
    required = {name for name, spec in declared.items() if "default" not in spec}
    assert required <= set(given), f"required but not given: {sorted(required - set(given))}"


# ---------------------------------------------------------------- 2. roles


def role_assignments() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for relative, name, resource in all_resources():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            yield relative, name, resource


def role_of(relative: str, assignment: dict[str, Any]) -> str:
    function = assignment["properties"]["roleDefinitionId"]["function"]
    assert function["type"] == "subscription_resource_id", (
        f"{relative}: roleDefinitionId must be subscriptionResourceId(roleDefinitions, <var>)"
    )
    role_id = resolve(function["parameters"]["resource_name_1"], relative)
    assert isinstance(role_id, str), f"{relative}: role id must be a variable holding a GUID"
    return role_id


def scope_type(relative: str, scope: Any) -> str:
    """The resource type an assignment's ``scope:`` names (a symbol, or symbol[i] in a loop)."""
    if isinstance(scope, dict):  # refreshTokenSecrets[i]
        scope = scope["operator"]["operands"]["operand_1"]
    found = parsed(relative)["resources"].get(scope)
    assert found is not None, f"{relative}: scope {scope!r} is not a resource of this file"
    return str(found["type"])


def test_role_assignments_use_only_the_allowed_roles_at_narrow_scopes() -> None:
    seen: set[str] = set()
    for relative, name, resource in role_assignments():
        assignment = body(resource)
        role_id = role_of(relative, assignment)
        role = ALLOWED_ROLES.get(role_id)
        assert role is not None, f"{relative}: {name} assigns role {role_id}, not an allowed one"
        scope = scope_type(relative, assignment.get("scope"))
        assert scope in ROLE_SCOPES[role], f"{relative}: {name} gives {role} on a {scope}"
        assert assignment["properties"]["principalType"] == "ServicePrincipal"
        # Deterministic names: guid(<scope>.id, principalId, <role>)
        guid = assignment["name"]["function"]
        assert guid["type"] == "guid", f"{relative}: {name} needs a guid() name"
        parts = json.dumps(guid["parameters"])
        assert "principalId" in parts, f"{relative}: {name}'s name must include the principal"
        assert '"id"' in parts, f"{relative}: {name}'s name must include the scope's id"
        seen.add(role)
    assert seen == set(ALLOWED_ROLES.values()), (
        f"roles never assigned: {set(ALLOWED_ROLES.values()) - seen}"
    )


def test_no_broad_role_anywhere_in_infra() -> None:
    for path in [*BICEP_FILES, *INFRA.glob("*.json")]:
        text = path.read_text("utf-8").lower()
        for role_id, role in FORBIDDEN_ROLES.items():
            assert role_id not in text, f"{path.name} mentions the {role} role"


def test_role_ids_are_named_by_a_commented_variable() -> None:
    """rbac.bicep style: one variable per role id, each with a comment saying what it is for."""
    for relative in ("app/rbac.bicep", "app/export-access.bicep"):
        lines = (INFRA / relative).read_text("utf-8").splitlines()
        for index, line in enumerate(lines):
            match = re.match(r"var (\w+) = '([0-9a-f-]{36})'", line)
            if match:
                assert match.group(2) in ALLOWED_ROLES, f"{relative}: {line}"
                assert lines[index - 1].startswith("//"), f"{relative}: comment the role {line}"


def test_secrets_officer_is_never_granted_on_the_whole_vault() -> None:
    for relative, name, resource in role_assignments():
        assignment = body(resource)
        if ALLOWED_ROLES[role_of(relative, assignment)] == "Key Vault Secrets Officer":
            assert "loop_type" in resource["config"], f"{name}: one assignment per secret"
            assert scope_type(relative, assignment["scope"]) == "Microsoft.KeyVault/vaults/secrets"


# ---------------------------------------------------------------- 2. settings


def test_settings_match_what_the_app_reads() -> None:
    """Fails when the app gains a setting the template lacks, or the other way round."""
    defined = set(template_settings())
    read_in_azure = {spec.name for spec in SETTINGS if spec.in_azure}
    stale = set(PLATFORM_SETTINGS) - defined
    assert not stale, f"PLATFORM_SETTINGS names settings the template no longer sets: {stale}"
    now_read = set(PLATFORM_SETTINGS) & {spec.name for spec in SETTINGS}
    assert not now_read, f"the app reads these now; take them out of PLATFORM_SETTINGS: {now_read}"
    expected = read_in_azure - set(OPTIONAL_SETTINGS_LEFT_OUT)
    actual = defined - set(PLATFORM_SETTINGS)
    assert actual == expected, (
        f"read by the app but not set by the template: {sorted(expected - actual)}; "
        f"set by the template but not read by the app: {sorted(actual - expected)}"
    )


def test_local_only_settings_are_not_set_in_azure() -> None:
    local_only = {spec.name for spec in SETTINGS if not spec.in_azure}
    assert not local_only & set(template_settings())


def test_setting_values_hold_no_secret() -> None:
    declared_secure = [
        (path.name, name)
        for path in BICEP_FILES
        for name, spec in parsed(path.relative_to(INFRA).as_posix()).get("parameters", {}).items()
        if any(d.get("type") == "secure" for d in spec.get("decorators", []))
    ]
    # The one secret a template takes: the alerts' optional webhook URL (its key is in the
    # URL). It goes into the action group only, never into an app setting.
    webhook = [("alerts.bicep", "alertWebhookUrl"), ("main.bicep", "alertWebhookUrl")]
    assert sorted(declared_secure) == webhook, (
        f"the templates take no secrets, yet: {declared_secure}"
    )
    assert "alertWebhookUrl" not in json.dumps(template_settings())
    for name, (relative, value) in template_settings().items():
        text = json.dumps(value)
        for marker in (*SECRET_MARKERS, *SECRET_FUNCTIONS):
            assert marker not in text, f"{name} uses {marker}"
        if is_literal(value, relative) and isinstance(value, str):
            assert not looks_like_a_secret(value), f"{name} has a literal that looks like a secret"
    for path in BICEP_FILES:
        text = path.read_text("utf-8")
        if path.name == "event-subscription.bicep":  # the one key a template reads, below
            text = text.replace(WEBHOOK_KEY, "")
        for call in ("listKeys(", "listAccountSas(", "listServiceSas(", "listSecrets("):
            assert call not in text, f"{path.name} reads keys with {call}"


# Flex Consumption delivers Event Grid events to the host's webhook, authorised by its
# eventgrid_extension system key: the one key a template reads, straight into the endpoint URL.
WEBHOOK_KEY = (
    "listKeys('${functionApp.id}/host/default', '2023-12-01').systemKeys.eventgrid_extension"
)


def test_the_webhook_key_goes_only_into_the_subscriptions_endpoint_url() -> None:
    lines = (INFRA / "app/event-subscription.bicep").read_text("utf-8").splitlines()
    using = [
        line.strip() for line in lines if "listKeys" in line and not line.lstrip().startswith("//")
    ]
    (line,) = using
    assert line.startswith("endpointUrl: 'https://${functionApp.properties.defaultHostName}"
                           "/runtime/webhooks/eventgrid?functionName=${functionName}&code=${")  # fmt: skip
    assert WEBHOOK_KEY in line
    template = parsed("app/event-subscription.bicep")
    assert "listKeys" not in json.dumps(template.get("outputs", {}))
    assert "listKeys" not in json.dumps(template.get("variables", {}))
    assert "listKeys" not in (INFRA / "main.bicep").read_text("utf-8")


def looks_like_a_secret(value: str) -> bool:
    """A long run of key-like characters (base64 or hex), as account keys and tokens are."""
    return re.search(r"[A-Za-z0-9+/=_-]{32,}", value) is not None and "://" not in value


def test_literal_setting_values_equal_the_app_defaults() -> None:
    defaults = {spec.name: spec.default for spec in SETTINGS}
    for name, (relative, value) in template_settings().items():
        default = defaults.get(name)
        if default is None:
            continue
        literal = resolve(value, relative)
        if is_literal(literal, relative):
            assert str(literal) == default, f"{name}: template {literal!r}, app default {default!r}"


# ---------------------------------------------------------------- 2. security properties


def test_storage_accounts_accept_only_entra_id_over_tls12() -> None:
    accounts = [
        (relative, name, body(resource)["properties"])
        for relative, name, resource in all_resources()
        if resource["type"] == "Microsoft.Storage/storageAccounts"
    ]
    assert accounts
    for relative, name, properties in accounts:
        where = f"{relative}: {name}"
        assert properties["allowSharedKeyAccess"] is False, where
        assert properties["allowBlobPublicAccess"] is False, where
        assert properties["minimumTlsVersion"] == "TLS1_2", where
        assert properties["supportsHttpsTrafficOnly"] is True, where
    for relative, name, resource in all_resources():
        if resource["type"].endswith("/containers"):
            assert body(resource)["properties"]["publicAccess"] == "None", f"{relative}: {name}"


def test_runtime_storage_is_closed_to_other_networks() -> None:
    (properties,) = [
        body(r)["properties"]
        for _, r in resources("app/storage.bicep")
        if r["type"] == "Microsoft.Storage/storageAccounts"
    ]
    assert properties["networkAcls"]["defaultAction"] == "Deny"
    assert properties["networkAcls"]["virtualNetworkRules"][0]["id"] == "appSubnetId"


def test_key_vault_is_rbac_only_recoverable_and_empty() -> None:
    (vault,) = [
        body(r)["properties"]
        for _, r in resources("app/keyvault.bicep")
        if r["type"] == "Microsoft.KeyVault/vaults"
    ]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert vault["networkAcls"]["defaultAction"] == "Deny"
    created_secrets = [
        (relative, name)
        for relative, name, r in all_resources()
        if r["type"] == "Microsoft.KeyVault/vaults/secrets"
    ]
    assert not created_secrets, f"the vault must hold no secret values: {created_secrets}"


def test_monitoring_accepts_only_entra_id() -> None:
    found = {r["type"]: body(r)["properties"] for _, r in resources("app/monitoring.bicep")}
    assert found["Microsoft.Insights/components"]["DisableLocalAuth"] is True
    assert found["Microsoft.OperationalInsights/workspaces"]["features"]["disableLocalAuth"]


def test_function_app_is_flex_consumption_python_311_https_only() -> None:
    found = {name: body(r) for name, r in resources("app/api.bicep")}
    plan = found["plan"]
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    app = found["functionApp"]
    assert app["identity"]["type"] == "UserAssigned"
    properties = app["properties"]
    assert properties["httpsOnly"] is True
    site = properties["siteConfig"]
    assert site["ftpsState"] == "Disabled"
    assert site["minTlsVersion"] == "1.2"
    assert site["scmMinTlsVersion"] == "1.2"
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
    }
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    for policy in ("ftpCredentials", "scmCredentials"):
        assert found[policy]["properties"]["allow"] is False, policy
    main = parsed("main.bicep")["parameters"]
    for parameter in ("instanceMemoryMB", "maximumInstanceCount"):
        assert parameter in main, f"main.bicep must expose {parameter}"


# ---------------------------------------------------------------- 3. checkov


def suppressions() -> list[tuple[str, str, str]]:
    """(file, check id, reason) for every inline ``checkov:skip`` in infra/."""
    found = []
    for path in BICEP_FILES:
        for line in path.read_text("utf-8").splitlines():
            match = re.search(r"checkov:skip=([A-Z0-9_]+)(?::\s*(.*))?", line)
            if match:
                relative = path.relative_to(INFRA).as_posix()
                found.append((relative, match.group(1), (match.group(2) or "").strip()))
    return found


def test_every_suppression_has_a_reason_and_is_documented() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text("utf-8")
    for relative, check, reason in suppressions():
        assert len(reason) >= 30, f"{relative}: {check} needs a specific reason"
        assert check in docs, f"{relative}: {check} is not listed in docs/deploy.md's suppressions"


def checkov_executable() -> str | None:
    """$CHECKOV, else checkov beside this Python, in .venv/checkov (its own venv), or on PATH."""
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(Path(sys.executable).parent / "checkov"),
        str(ROOT / ".venv" / "checkov" / "bin" / "checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("checkov")


# What checkov writes to stderr when a check or a file defeats it: the check is then missing from
# its report, so a summary with 0 failed says nothing about it.
CHECKOV_CRASH = re.compile(
    r"Traceback|Failed to run check|Failed to parse|parsing error|\[ERROR\]|Exception",
    re.IGNORECASE,
)


def checkov_crashes(stderr: str) -> list[str]:
    """The lines of checkov's stderr that say a check crashed or a file did not parse."""
    return [line for line in stderr.splitlines() if CHECKOV_CRASH.search(line)]


def test_a_checkov_crash_is_recognised() -> None:
    """The stderr of checkov 3.3.30 when CKV_AZURE_189 met a ternary it could not read."""
    crashed = (
        "2026-12-07 19:23:07,730 [MainThread  ] [ERROR]  Failed to run check CKV_AZURE_189 on "
        "infra/app/keyvault.bicep:Microsoft.KeyVault/vaults.vault\n"
        "Traceback (most recent call last):\n"
        "AttributeError: 'dict' object has no attribute 'lower'\n"
    )
    assert len(checkov_crashes(crashed)) == 2
    assert checkov_crashes("") == []
    assert checkov_crashes("[WARNING] could not reach the guidelines API\n") == []


@pytest.mark.integration  # runs checkov, a tool of its own
def test_checkov_reports_no_failed_check() -> None:
    executable = checkov_executable()
    if executable is None:
        message = "checkov is not installed (pip install checkov, or set CHECKOV=/path/to/checkov)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run this check")
        pytest.skip(message)
    command = [executable, "-d", str(INFRA), "--framework", "bicep"]
    command += ["--skip-download", "--compact", "-o", "json"]  # not --quiet: it hides passes
    # checkov logs a check that crashed (and a file it could not parse) at ERROR on stderr and
    # leaves the check out of its report; LOG_LEVEL pins that these lines are printed.
    environment = {**os.environ, "LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
        env=environment,
    )  # fmt: skip
    crashes = checkov_crashes(done.stderr)
    assert not crashes, "checkov could not run every check:\n" + "\n".join(crashes)
    assert done.stdout.strip(), f"checkov printed nothing (exit {done.returncode}): {done.stderr}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    (bicep,) = [r for r in reports if r.get("check_type") == "bicep"]
    summary = bicep["summary"]
    counts = (
        f"checkov {summary.get('checkov_version')}: passed={summary['passed']} "
        f"failed={summary['failed']} skipped={summary['skipped']} "
        f"parsing_errors={summary['parsing_errors']}"
    )
    print(counts)
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in bicep["results"].get("failed_checks", [])
    ]
    assert summary["failed"] == 0, f"{counts}; failed: {failed}"
    assert summary["parsing_errors"] == 0, f"{counts}; checkov could not parse some files"
    assert summary["passed"] > 0, counts
    assert summary["skipped"] == len(suppressions()), f"{counts}; inline skips: {suppressions()}"
    ran = {(c["check_id"], c["resource"]) for c in bicep["results"].get("passed_checks", [])}
    # The check that once crashed on the vault's ternary: it runs, and passes (the vault's
    # firewall denies by default; docs/deploy.md, "Checkov suppressions").
    assert ("CKV_AZURE_189", "Microsoft.KeyVault/vaults.vault") in ran, counts


# ---------------------------------------------------------------- alerts and workbook


def test_alerts_and_the_workbook_watch_the_apps_application_insights() -> None:
    module = parsed("main.bicep")["modules"]["alerts"]
    params = json.dumps(module["config"]["params"])
    assert '"applicationInsightsId": {"operator"' in params
    assert '"monitoring"' in params and '"applicationInsightsId"' in params  # noqa: PT018
    assert "alertEmails" in params and "staleAfterHours" in params  # noqa: PT018
    found = dict(resources("app/alerts.bicep"))
    assert {found[n]["type"] for n in ("actionGroup", "alertRules", "workbook")} == {
        "Microsoft.Insights/actionGroups",
        "Microsoft.Insights/scheduledQueryRules",
        "Microsoft.Insights/workbooks",
    }
    rules = body(found["alertRules"])["properties"]
    assert json.dumps(rules["scopes"]) == json.dumps(["applicationInsightsId"])
    assert body(found["workbook"])["properties"]["sourceId"] == "applicationInsightsId"
    text = (INFRA / "app" / "alerts.bicep").read_text("utf-8")
    assert "actionGroups: [ actionGroup.id ]" in text  # every rule notifies the group


def test_each_alert_queries_a_metric_the_app_emits() -> None:
    source = (ROOT / "shared" / "adapters" / "telemetry.py").read_text("utf-8")
    emitted = set(re.findall(r'create_(?:counter|histogram)\(\s*"([^"]+)"', source))
    text = (INFRA / "app" / "alerts.bicep").read_text("utf-8")
    queried = set(re.findall(r'"(exporter\.[a-z_.]+)"', text))
    assert queried, "the alerts query no metric"
    assert queried <= emitted, f"queried but never emitted: {sorted(queried - emitted)}"
    names = re.findall(r"name: '([a-z-]+)'\n    severity", text)
    assert names == ["run-failed", "credentials-refused", "removal-safeguard", "audience-stale",
                     "timer-check-failed", "timer-silent", "too-few-users", "match-rate-dropped",
                     "audience-cap-near", "members-age-out", "latency-high"]  # fmt: skip
    for kind in ("credentials_refused", "removal_blocked"):
        assert f'kind == "{kind}"' in text
    queried_kinds = set(re.findall(r'kind == "([a-z_]+)"', text))
    assert queried_kinds <= {reason.value for reason in EndReason}  # what a run ends with


def test_the_latency_alert_fires_above_its_threshold_parameter() -> None:
    params = parsed("app/alerts.bicep")["parameters"]
    assert params["latencySeconds"]["default"] == 600
    text = (INFRA / "app" / "alerts.bicep").read_text("utf-8")
    rule = text.split("name: 'latency-high'", 1)[1].split("\n  }", 1)[0]
    assert '"exporter.run.latency"' in rule
    assert "where longest > ${latencySeconds}'" in rule  # the parameter, not a literal
    assert "perExport: true" in rule and "operator: 'GreaterThan'" in rule  # noqa: PT018
    source = (ROOT / "shared" / "adapters" / "telemetry.py").read_text("utf-8")
    assert '"exporter.run.latency"' in source and "LATENCY.record(" in source  # noqa: PT018


def test_each_audience_warning_has_its_own_alert_rule() -> None:
    text = (INFRA / "app" / "alerts.bicep").read_text("utf-8")
    queried = re.findall(r'\$\{warnings\} \| where code == "([a-z_]+)"', text)
    assert queried == list(WARNING_CODES)  # one rule per code, in the table's order
    for code in WARNING_CODES:
        rule = text.split(f"name: '{code.replace('_', '-')}'", 1)[1].split("\n  }", 1)[0]
        assert "perExport: true" in rule
        assert f'code == "{code}"' in rule
    source = (ROOT / "shared" / "adapters" / "telemetry.py").read_text("utf-8")
    assert '"exporter.audience.warnings"' in source and '"code": code' in source  # noqa: PT018


def test_spilled_digests_a_crashed_run_left_are_deleted_after_a_day() -> None:
    (policy,) = [
        body(r)["properties"]["policy"]
        for _, r in resources("app/storage.bicep")
        if r["type"] == "Microsoft.Storage/storageAccounts/managementPolicies"
    ]
    (rule,) = policy["rules"]
    assert rule["enabled"] is True
    assert rule["definition"]["filters"]["prefixMatch"] == ["${spillContainerName}/"]
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": 1
    }
    assert "SPILL_CONTAINER: spillContainerName" in (INFRA / "main.bicep").read_text()


# ---------------------------------------------------------------- 4. data lifecycle and network


def _module(name: str) -> dict[str, Any]:
    module: dict[str, Any] = parsed("main.bicep")["modules"][name]
    return module


def _dotted(value: Any) -> Any:
    """pycep's property accessor (``a.b.c``) as the text it was written as."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return f"{_dotted(operands['operand_1'])}.{_dotted(operands['operand_2'])}"
    return value


def _of_type(relative: str, kind: str) -> list[dict[str, Any]]:
    return [r for _, r in resources(relative) if r["type"] == kind]


def test_the_export_account_deletes_old_snapshots_and_has_no_soft_delete() -> None:
    (policy,) = [body(r)["properties"]["policy"] for r in
                 _of_type("app/container-account.bicep",
                          "Microsoft.Storage/storageAccounts/managementPolicies")]  # fmt: skip
    (rule,) = policy["rules"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${containerName}/"]
    days = rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
    assert days == "deleteAfterDays"
    exported = body(_module("exportStorage"))["params"]
    assert exported["deleteAfterDays"] == "exportRetentionDays"
    assert resolve("exportRetentionDays", "main.bicep") == 7
    assert exported["softDelete"] is False  # Customer Insights' exports fail with it on
    blob = body(_of_type("app/container-account.bicep",
                         "Microsoft.Storage/storageAccounts/blobServices")[0])  # fmt: skip
    assert blob["properties"]["deleteRetentionPolicy"]["enabled"] == "softDelete"
    assert body(_module("deploymentStorage"))["params"].get("softDelete") is None  # stays on


def test_the_export_and_package_accounts_keep_no_versions_or_change_feed() -> None:
    (blob,) = _of_type("app/container-account.bicep",
                       "Microsoft.Storage/storageAccounts/blobServices")  # fmt: skip
    properties = body(blob)["properties"]
    assert properties.get("isVersioningEnabled") is False
    assert properties.get("changeFeed") == {"enabled": False}
    assert properties["containerDeleteRetentionPolicy"]["enabled"] == "softDelete"
    assert resolve("softDelete", "app/container-account.bicep") is True  # the package account


def test_deleting_personal_data_is_final_on_the_runtime_account() -> None:
    """State (STATE_CONTAINER) and spills (SPILL_CONTAINER) live on the runtime account, where
    nothing keeps a copy of a deleted or overwritten blob (docs/deploy.md, "Erasure is final")."""
    settings = object_variable("main.bicep", "appSettings")
    assert settings["STATE_CONTAINER"] == "exporter-state"
    assert settings["SPILL_CONTAINER"] == "spillContainerName"
    platform = object_variable("app/api.bicep", "platformSettings")
    assert platform["AzureWebJobsStorage__blobServiceUri"] == "storageBlobEndpoint"
    endpoint = body(_module("api"))["params"]["storageBlobEndpoint"]
    assert _dotted(endpoint) == "storage.outputs.blobEndpoint"
    assert _module("storage")["detail"]["path"] == "app/storage.bicep"
    (blob,) = _of_type("app/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices")
    properties = body(blob)["properties"]
    assert properties["deleteRetentionPolicy"] == {"enabled": False}
    assert properties["containerDeleteRetentionPolicy"] == {"enabled": False}
    assert properties.get("isVersioningEnabled") is False
    assert properties.get("changeFeed") == {"enabled": False}
    assert properties.get("restorePolicy") == {"enabled": False}
    for path in BICEP_FILES:  # no copy of a blob elsewhere either
        text = path.read_text("utf-8")
        for kind in ("objectReplicationPolicies", "inventoryPolicies", "backupVaults"):
            assert kind not in text, f"{path.name} declares {kind}"
    for module in ("statestore.py", "spillstore.py"):  # nor a copy made by the code
        source = (ROOT / "shared" / "adapters" / module).read_text("utf-8")
        for call in ("create_snapshot", "start_copy_from_url", "undelete_blob", "version_id"):
            assert call not in source, f"shared/adapters/{module} calls {call}"


def test_private_networking_gives_every_account_and_the_vault_an_endpoint_and_closes_them() -> None:
    private = _module("privateLink")
    assert private["config"]["condition"] == "privateNetworking"
    assert resolve("privateNetworking", "main.bicep") is False
    endpoints = parsed("main.bicep")["variables"]
    listed = {(e["key"], _dotted(e["id"]), e["group"])
              for e in endpoints["storageEndpoints"]["value"]}  # fmt: skip
    assert listed == {
        ("runtime-blob", "storage.outputs.id", "blob"),
        ("runtime-queue", "storage.outputs.id", "queue"),
        ("runtime-table", "storage.outputs.id", "table"),
        ("package-blob", "deploymentStorage.outputs.id", "blob"),
        ("vault", "keyVault.outputs.id", "vault"),
    }
    chosen = endpoints["exportEndpoints"]["value"]["operator"]["operands"]
    assert chosen["condition"] == "useExistingExportStorage"
    (export,) = chosen["false_value"]
    assert (export["key"], export["group"]) == ("export-blob", "blob")
    for module in ("storage", "deploymentStorage", "exportStorage", "keyVault"):
        assert body(_module(module))["params"]["privateNetworking"] == "privateNetworking"
    for relative, kind in (("app/storage.bicep", "Microsoft.Storage/storageAccounts"),
                           ("app/container-account.bicep", "Microsoft.Storage/storageAccounts"),
                           ("app/keyvault.bicep", "Microsoft.KeyVault/vaults")):  # fmt: skip
        (resource,) = _of_type(relative, kind)
        access = body(resource)["properties"]["publicNetworkAccess"]
        assert "privateNetworking" in json.dumps(access)
        assert "Disabled" in json.dumps(access)
    zones = json.dumps(parsed("app/private-link.bicep")["variables"]["zones"]["value"])
    for zone in ("privatelink.blob.", "privatelink.queue.", "privatelink.table.",
                 "privatelink.vaultcore.azure.net"):  # fmt: skip
        assert zone in zones
    kinds = {r["type"] for _, r in resources("app/private-link.bicep")}
    assert {"Microsoft.Network/privateEndpoints", "Microsoft.Network/privateDnsZones",
            "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"} <= kinds  # fmt: skip


def test_the_vault_and_the_accounts_have_delete_locks_and_send_logs_to_the_workspace() -> None:
    for relative in ("app/storage.bicep", "app/container-account.bicep", "app/keyvault.bicep"):
        (lock,) = _of_type(relative, "Microsoft.Authorization/locks")
        assert lock["config"]["condition"] == "deleteLock"
        assert body(lock)["properties"]["level"] == "CanNotDelete"
        settings = _of_type(relative, "Microsoft.Insights/diagnosticSettings")
        assert settings, relative
        for setting in settings:
            assert body(setting)["properties"]["workspaceId"] == "workspaceId"
    for module in ("storage", "deploymentStorage", "exportStorage", "keyVault"):
        params = body(_module(module))["params"]
        assert params["deleteLock"] == "resourceLocks"
        assert _dotted(params["workspaceId"]) == "monitoring.outputs.workspaceId"
    assert resolve("resourceLocks", "main.bicep") is True
    (audit,) = _of_type("app/keyvault.bicep", "Microsoft.Insights/diagnosticSettings")
    assert [c["category"] for c in body(audit)["properties"]["logs"]] == ["AuditEvent"]
    scopes = {body(s)["scope"] for s in _of_type("app/storage.bicep",
                                                 "Microsoft.Insights/diagnosticSettings")}  # fmt: skip
    assert scopes == {"blobService", "queueService", "tableService"}
    for setting in _of_type("app/storage.bicep", "Microsoft.Insights/diagnosticSettings"):
        logged = {c["category"] for c in body(setting)["properties"]["logs"]}
        assert logged == {"StorageRead", "StorageWrite", "StorageDelete"}
    retention = parsed("app/monitoring.bicep")["parameters"]["retentionInDays"]
    assert retention["default"] >= 90
    (floor,) = [d["argument"] for d in retention["decorators"] if d["type"] == "min_value"]
    assert floor >= 90


def test_the_subnet_lets_out_only_https_to_what_the_app_needs() -> None:
    rules = parsed("app/network.bicep")["variables"]["allowedOutbound"]["value"]
    assert {r["destination"] for r in rules} == {
        "Storage", "AzureKeyVault", "AzureActiveDirectory", "AzureMonitor", "VirtualNetwork",
        "Internet"}  # fmt: skip
    text = (INFRA / "app/network.bicep").read_text()
    assert "destinationPortRange: '443'" in text
    assert "name: 'deny-other-outbound'" in text
    assert "access: 'Deny'" in text
    assert "168.63.129.16/32" in text  # Azure's DNS, the only other way out
    kinds = {r["type"]: r for _, r in resources("app/network.bicep")}
    for kind in ("Microsoft.Network/natGateways", "Microsoft.Network/publicIPAddresses"):
        assert kinds[kind]["config"]["condition"] == "natGateway"
    assert body(_module("network"))["params"]["natGateway"] == "natGateway"
    assert resolve("natGateway", "main.bicep") is False


# ---------------------------------------------------------------- 5. events (issue 26)

EVENTS = "app/event-subscription.bicep"


def _blob_created() -> dict[str, Any]:
    (subscription,) = _of_type(EVENTS, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    properties: dict[str, Any] = body(subscription)["properties"]
    return properties


def test_the_system_topic_is_on_the_export_account_whichever_it_is() -> None:
    module = _module("eventsTopic")
    assert module["config"]["condition"] == "exportEvents"
    assert resolve("exportEvents", "main.bicep") is True
    config = body(module)
    assert config["params"]["storageAccountName"] == "exportAccountName"
    chosen = parsed("main.bicep")["variables"]["exportAccountName"]["value"]["operator"]
    assert chosen["operands"]["condition"] == "useExistingExportStorage"
    assert chosen["operands"]["true_value"] == "exportStorageAccountName"
    assert _dotted(chosen["operands"]["false_value"]) == "exportStorage.outputs.name"
    # In the account's own resource group: the customer's, or the app's for the one created here.
    scope = config["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"]["resource_group_name"] == "exportResourceGroupName"
    group = json.dumps(parsed("main.bicep")["variables"]["exportResourceGroupName"]["value"])
    assert "exportStorageResourceGroup" in group
    (topic,) = _of_type("app/export-events.bicep", "Microsoft.EventGrid/systemTopics")
    topic = body(topic)
    assert topic["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    assert _dotted(topic["properties"]["source"]) == "account.id"
    assert _dotted(topic["location"]) == "account.location"
    assert topic["identity"] == {"type": "SystemAssigned"}
    (account,) = [r for _, r in resources("app/export-events.bicep", existing=True)]
    assert body(account)["name"] == "storageAccountName"


def test_the_subscription_delivers_only_new_partitions_and_manifests_to_blob_created() -> None:
    properties = _blob_created()
    webhook = properties["destination"]
    assert webhook["endpointType"] == "WebHook"
    assert (
        "/runtime/webhooks/eventgrid?functionName=${functionName}&code=${listKeys("
        in (webhook["properties"]["endpointUrl"])
    )
    assert resolve("functionName", EVENTS) == "blob_created"
    found = properties["filter"]
    assert found["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert found["subjectBeginsWith"] == "subjectPrefix"
    prefix = json.dumps(parsed(EVENTS)["variables"]["subjectPrefix"]["value"])
    assert "/blobServices/default/containers/${exportContainerName}/blobs/" in prefix
    filters = {f["operatorType"]: f for f in found["advancedFilters"]}
    assert filters["StringEndsWith"]["key"] == "subject"
    assert sorted(filters["StringEndsWith"]["values"]) == [".csv", "model.json"]
    assert filters["StringIn"]["key"] == "data.api"  # committed blobs only
    assert "CreateFile" not in filters["StringIn"]["values"]
    assert set(filters) == {"StringEndsWith", "StringIn"}
    module = _module("blobCreatedSubscription")
    assert module["config"]["condition"] == {"operator": {"type": "and", "operands": {
        "operand_1": "exportEvents", "operand_2": "exportEventSubscription"}}}  # fmt: skip
    assert resolve("exportEventSubscription", "main.bicep") is False  # after the code exists
    params = body(module)["params"]
    assert _dotted(params["topicName"]) == "eventsTopic.outputs.name"
    assert _dotted(params["functionAppName"]) == "api.outputs.name"
    assert "createdExportContainerName" in json.dumps(params["exportContainerName"])
    scope = body(module)["scope"]["function"]["parameters"]["resource_group_name"]
    assert scope == "exportResourceGroupName"  # beside its topic


def test_undeliverable_events_are_dead_lettered_by_the_topics_own_identity() -> None:
    dead = _blob_created()["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}
    destination = dead["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    assert destination["properties"] == {
        "resourceId": "deadLetterAccountId", "blobContainerName": "deadLetterContainerName"}  # fmt: skip
    assert "deadLetterDestination" not in _blob_created()  # never with an account key
    params = body(_module("blobCreatedSubscription"))["params"]
    assert _dotted(params["deadLetterAccountId"]) == "storage.outputs.id"  # the runtime account
    assert params["deadLetterContainerName"] == "deadLetterContainerName"
    assert (
        body(_module("storage"))["params"]["deadLetterContainerName"] == "deadLetterContainerName"
    )
    (container,) = [r for _, r in resources("app/storage.bicep")
                    if r["type"].endswith("/containers")]  # fmt: skip
    assert body(container)["name"] == "deadLetterContainerName"
    # Storage Blob Data Contributor for the topic's identity, on that container only.
    (assignment,) = _of_type(
        "app/deadletter-access.bicep", "Microsoft.Authorization/roleAssignments"
    )
    assignment = body(assignment)
    role = ALLOWED_ROLES[role_of("app/deadletter-access.bicep", assignment)]
    assert role == "Storage Blob Data Contributor"
    assert scope_type("app/deadletter-access.bicep", assignment["scope"]).endswith("/containers")
    access = body(_module("deadLetterAccess"))["params"]
    assert _dotted(access["principalId"]) == "eventsTopic.outputs.principalId"
    assert access["containerName"] == "deadLetterContainerName"
    assert "deadLetterAccess" in json.dumps(body(_module("blobCreatedSubscription"))["dependsOn"])


def test_the_subscription_retries_for_a_bounded_time() -> None:
    policy = _blob_created()["retryPolicy"]
    attempts = resolve(policy["maxDeliveryAttempts"], EVENTS)
    minutes = resolve(policy["eventTimeToLiveInMinutes"], EVENTS)
    assert isinstance(attempts, int) and 1 <= attempts <= 30  # noqa: PT018
    # Longer than an hourly timer (the schedule docs/deploy.md recommends with events), so a
    # dead-lettered event is one the timer has certainly caught up with.
    assert isinstance(minutes, int) and 60 < minutes <= 1440  # noqa: PT018


def test_sign_in_lets_event_grid_reach_only_the_hosts_webhook() -> None:
    found = {name: body(r) for name, r in resources("app/api.bicep")}
    validation = found["signIn"]["properties"]["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["excludedPaths"] == ["/runtime/webhooks/eventgrid"]
