"""The Bicep templates in infra/ agree with the code: settings, bindings, roles, parameters, security.

The templates are read with pycep-parser (no Bicep compiler or Azure is needed). The app settings the
template sets are turned into an environment: literals as they are, a parameter as its default (or,
for a required one, the example in its ``@metadata``), and a deployment output (an identity's client
id, a storage endpoint) as a placeholder of the right shape. ``load_settings`` must accept it, so every
setting the code requires is set, and whatever the template leaves out has a default in the code.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.errors import ConfigurationError
from shared.settings import EXTERNAL_KEYS, SETTING_KEYS, load_settings

INFRA = Path(__file__).resolve().parent.parent / "infra"
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000001"

# Keys of local.settings.sample.json the template does not set, each for a reason.
NOT_SET_IN_AZURE = {
    "AzureWebJobsStorage": "a connection string; Azure uses the identity-based AzureWebJobsStorage__* keys",
    "AzureWebJobsStorage__accountName": "the host takes an account name or service URIs; the template sets the URIs",
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the language from functionAppConfig.runtime",
    "IDENTITY_ENDPOINT": "set by the platform for the managed identity",
    "IDENTITY_HEADER": "set by the platform for the managed identity",
    "GRAPH_BASE_URL": "the Graph emulator's URL; in Azure the URL follows GRAPH_CLOUD",
    "WEBSITE_AUTH_ENABLED": "set by the platform when App Service Authentication is on",
    "WEBSITE_HOSTNAME": "set by the platform: the app's own host name",
    "PORTAL_PUBLIC_URL": "follows WEBSITE_HOSTNAME in Azure (set it for a custom domain)",
    "PORTAL_SIGNIN_URL": "My Apps by default; set it for another sign-in page",
    "CAPTCHA_VERIFY_URL": "the provider's own endpoint in Azure; set only to point tests at a stand-in",
    "GUEST_LIFECYCLE_DAY_SECONDS": "a real day in Azure; shortened only for trials and tests",
    "AZURE_AUTHORITY_HOST": "follows GRAPH_CLOUD; only client-secret/certificate credentials use it",
    "AZURE_TENANT_ID": "only client-secret/certificate/workload credentials need it; Azure uses the managed identity",
    "AZURE_CLIENT_SECRET": "no secrets: Azure uses the managed identity",
    "AZURE_CLIENT_CERTIFICATE_PATH": "no secrets: Azure uses the managed identity",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD": "no secrets: Azure uses the managed identity",
    "AZURE_FEDERATED_TOKEN_FILE": "no secrets: Azure uses the managed identity",
    "LEASE_MARGIN_SECONDS": "a test knob (tests shorten the lease); Azure keeps the 10 s default",
}

# Keys the Functions host (not the app) reads.
HOST_KEYS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_ENABLE_OPENTELEMETRY",  # the Python worker's switch for telemetryMode OpenTelemetry
}
# Built-in Azure role definition ids, as Microsoft documents them.
AZURE_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
}
# Microsoft Graph application permissions (app role ids), as Microsoft documents them.
GRAPH_APP_ROLES = {
    "User.Invite.All": "09850681-111b-4a89-9bed-3f2cae46d706",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "Domain.Read.All": "dbb9058a-0e50-45d7-ae91-66909b5d4664",
    "User.ReadWrite.All": "741f803b-c850-494e-b5df-cde7c675a1ca",
    "GroupMember.ReadWrite.All": "dbaae8cf-10b5-4b86-a4a1-f871c94c6695",
    "Mail.Send": "b633e1c5-b582-4048-a93e-9f11b44c7e96",
    # The guest lifecycle's rules (tests/test_guest_infra.py).
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
}


def _parse(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = BicepParser().parse(file_path=path)
    return result


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return _parse(INFRA / "main.bicep")


def _config(block: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, whether or not it has an ``if`` condition."""
    config: dict[str, Any] = block["config"]
    return config["config"] if "condition" in config else config


def _decorator(param: dict[str, Any], kind: str) -> Any:
    return next((d["argument"] for d in param["decorators"] if d["type"] == kind), None)


def _accessor(node: Any) -> str:
    """``a.b.c`` from pycep's nested property accessors."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return f"{_accessor(operands['operand_1'])}.{_accessor(operands['operand_2'])}"
    assert isinstance(node, str), node
    return node


class Resolver:
    """Turns the values of a template's app settings object into strings an app would see."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.params = doc.get("parameters", {})
        self.variables = doc.get("variables", {})

    def reference(self, name: str) -> str:
        if name in self.params:
            param = self.params[name]
            if param["default"] is not None:
                return self.scalar(param["default"])
            example = (_decorator(param, "metadata") or {}).get("example")
            assert example is not None, f"required parameter {name} needs @metadata({{example: ...}})"
            return str(example)
        if name in self.variables:
            return self.value(self.variables[name]["value"])
        return self.placeholder(name)

    @staticmethod
    def placeholder(expression: str) -> str:
        """A stand-in of the right shape for a value known only at deployment."""
        if expression == "keyVault.outputs.uri":
            return "https://placeholder.vault.azure.net/"
        if ".serviceEndpoints." in expression:
            return f"https://placeholder.{expression.rsplit('.', 1)[-1]}.core.windows.net/"
        if expression.endswith(("clientId", "principalId", "tenantId")):
            return PLACEHOLDER_ID
        return f"placeholder:{expression}"

    @staticmethod
    def scalar(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    def value(self, node: Any) -> str:
        if isinstance(node, str):
            if node in self.params or node in self.variables:
                return self.reference(node)
            # A literal, possibly with ${...} interpolations.
            return re.sub(r"\$\{([^}]*)\}", lambda m: self.reference(m.group(1).strip()), node)
        if isinstance(node, dict) and "function" in node:
            function = node["function"]
            if function["type"] == "guid":  # a deployment-specific value (FORM_TOKEN_SECRET): any GUID will do here
                return "00000000-0000-4000-8000-000000000000"
            assert function["type"] == "string", f"app setting built with {function['type']}(): add it to Resolver"
            return self.scalar_of(function["parameters"]["value_to_convert"])
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "conditional":
            operands = node["operator"]["operands"]
            chosen = "true_value" if self.condition(operands["condition"]) else "false_value"
            return self.value(operands[chosen])
        if isinstance(node, dict) and "operator" in node:
            return self.placeholder(_accessor(node))
        raise AssertionError(f"an app setting must be a string expression, got {node!r}")

    def condition(self, node: Any) -> bool:
        """``a == b`` or ``a != b`` over parameters (at their defaults) and literals."""
        kind = node["operator"]["type"]
        assert kind in ("equals", "not_equals"), f"condition {kind} in an app setting: add it to Resolver"
        operands = node["operator"]["operands"]
        same = self.value(operands["operand_1"]) == self.value(operands["operand_2"])
        return same if kind == "equals" else not same

    def scalar_of(self, node: Any) -> str:
        if isinstance(node, str) and node in self.params and self.params[node]["default"] is not None:
            return self.scalar(self.params[node]["default"])
        return self.value(node)


@pytest.fixture(scope="module")
def app_settings(main: dict[str, Any]) -> dict[str, str]:
    """The function app's settings as the template sets them, resolved as the module docstring says; a Key Vault
    reference as the platform resolves it, to the secret's value."""
    resolver = Resolver(main)
    settings = {key: resolver.value(value) for key, value in main["variables"]["appSettings"]["value"].items()}
    return {
        key: "value-of-the-key-vault-secret" if value.startswith("@Microsoft.KeyVault(") else value
        for key, value in settings.items()
    }


def test_an_unresolved_key_vault_reference_is_refused(main: dict[str, Any]) -> None:
    """App Service passes a reference it cannot resolve (no role on the vault, no secret) through unchanged;
    the app must not sign form tokens with the reference's public text."""
    resolver = Resolver(main)
    raw = {key: resolver.value(value) for key, value in main["variables"]["appSettings"]["value"].items()}
    assert raw["FORM_TOKEN_SECRET"].startswith("@Microsoft.KeyVault(SecretUri=")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(raw)
    assert "FORM_TOKEN_SECRET" in str(raised.value) and "Key Vault Secrets User" in str(raised.value)


def _function_app_module(main: dict[str, Any]) -> dict[str, Any]:
    return _config(main["modules"]["functionApp"])["params"]


def test_every_template_parses() -> None:
    """Every .bicep file parses (checkov, which uses the same parser, would silently skip one that does not)."""
    files = sorted(INFRA.rglob("*.bicep"))
    assert len(files) >= 4
    for path in files:
        _parse(path)


# Outputs have their own namespace (``output name string = name`` is fine); these share one.
_DECLARATION = re.compile(r"^(?:param|var|resource|module|type|func)\s+([A-Za-z_]\w*)\b", re.MULTILINE)


def test_every_identifier_is_declared_once() -> None:
    """Bicep refuses a file that declares a name twice (BCP028); the parser keeps the last one silently."""
    for path in sorted(INFRA.rglob("*.bicep")):
        names = _DECLARATION.findall(path.read_text())
        assert [n for n in names if names.count(n) > 1] == [], path.name


def test_template_settings_satisfy_load_settings(app_settings: dict[str, str]) -> None:
    """load_settings accepts exactly what the template sets: every required key is there and valid."""
    settings = load_settings(app_settings)
    assert settings.graph_credential == "managed_identity"
    assert settings.storage_connection_string is None  # identity-based, no keys
    assert settings.graph_base_url.startswith("https://graph.microsoft.com")
    # The policy document is the Blob in the container the template creates (docs/policy.md).
    assert settings.signup_policy == "https://placeholder.blob.core.windows.net/policy/policy.json"


def test_template_sets_only_keys_something_reads(app_settings: dict[str, str]) -> None:
    """Every key the template sets is read by the code, the sample, or the Functions host: no typos."""
    sample = set(json.loads((INFRA.parent / "local.settings.sample.json").read_text())["Values"])
    known = set(SETTING_KEYS) | set(EXTERNAL_KEYS) | sample | HOST_KEYS
    assert set(app_settings) - known == set()


def test_template_mirrors_the_sample(app_settings: dict[str, str]) -> None:
    """Every key of local.settings.sample.json is set in Azure too, or is listed here with the reason it is not."""
    sample = json.loads((INFRA.parent / "local.settings.sample.json").read_text())["Values"]
    missing = set(sample) - set(app_settings) - set(NOT_SET_IN_AZURE)
    assert missing == set()
    assert not set(NOT_SET_IN_AZURE) & set(app_settings), "a key listed as not set in Azure is set after all"


def test_every_setting_a_binding_names_is_set(app_settings: dict[str, str]) -> None:
    """A %NAME% in a trigger (queue name, timer schedule) must be an app setting, or the host cannot start it."""
    from function_app import app

    app.functions_bindings = None  # get_functions() refuses a second call on the same app otherwise
    names = set()
    for function in app.get_functions():
        for binding in function.get_bindings_dict()["bindings"]:
            for value in binding.values():
                if isinstance(value, str):
                    names.update(re.findall(r"%([^%]+)%", value))
    assert "SIGNUP_QUEUE" in names
    assert names <= set(app_settings)


def test_identity_based_storage_and_telemetry(app_settings: dict[str, str], main: dict[str, Any]) -> None:
    """One user-assigned identity for host storage, Graph and Application Insights; no shared keys."""
    raw = main["variables"]["appSettings"]["value"]
    assert app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        assert app_settings[f"AzureWebJobsStorage__{service}ServiceUri"].startswith("https://")
    identity_client_id = "identity.outputs.clientId"
    assert _accessor(raw["AzureWebJobsStorage__clientId"]) == identity_client_id
    assert _accessor(raw["AZURE_CLIENT_ID"]) == identity_client_id
    assert raw["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD;ClientId=${identity.outputs.clientId}"
    storage = _config(main["modules"]["storage"])["params"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert _config(main["modules"]["monitoring"])["params"]["disableLocalAuth"] is True


def test_storage_holds_what_the_app_and_host_use(app_settings: dict[str, str], main: dict[str, Any]) -> None:
    """The queue, its poison queue, the sign-up and audit tables, the policy container, Flex's deployment container."""
    resolver = Resolver(main)
    storage = _config(main["modules"]["storage"])["params"]
    queues = {resolver.value(q["name"]) for q in storage["queueServices"]["queues"]}
    tables = {resolver.value(t["name"]) for t in storage["tableServices"]["tables"]}
    containers = {resolver.value(c["name"]) for c in storage["blobServices"]["containers"]}
    queue = app_settings.get("SIGNUP_QUEUE", "signups")
    assert queues == {queue, f"{queue}-poison"}
    assert tables == {app_settings.get("SIGNUP_TABLE", "signups"), app_settings.get("SIGNUP_AUDIT_TABLE")}
    assert "policy" in containers
    deployment = resolver.value(_function_app_module(main)["deploymentContainerUrl"])
    assert any(deployment.endswith(f"/{c}") for c in containers)


def test_runtime_and_python_versions(main: dict[str, Any]) -> None:
    """Flex takes the language from functionAppConfig; the Python versions are the ones pyproject allows."""
    sample = json.loads((INFRA.parent / "local.settings.sample.json").read_text())["Values"]
    site = _config(_parse(INFRA / "app" / "function-app.bicep")["modules"]["site"])["params"]
    assert site["functionAppConfig"]["runtime"]["name"] == sample["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert site["kind"] == "functionapp,linux"
    assert _decorator(main["parameters"]["pythonVersion"], "allowed") == ["3.11", "3.12", "3.13"]
    requires = tomllib.loads((INFRA.parent / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.14"
    plan = _config(main["modules"]["plan"])["params"]
    assert plan["skuName"] == "FC1"


def test_site_hardening_and_easy_auth() -> None:
    """HTTPS only, no publishing passwords, and Easy Auth that lets the anonymous sign-up API through."""
    doc = _parse(INFRA / "app" / "function-app.bicep")
    site = _config(doc["modules"]["site"])["params"]
    assert site["httpsOnly"] is True
    assert site["siteConfig"]["minTlsVersion"] == "1.2"
    assert {(p["name"], p["allow"]) for p in site["basicPublishingCredentialsPolicies"]} == {
        ("ftp", False),
        ("scm", False),
    }
    assert site["configs"][0]["retainCurrentAppSettings"] is False
    # The app answers CORS itself, for POST /api/signups only; platform CORS would override it on every route.
    assert site["siteConfig"]["cors"]["allowedOrigins"] == []
    auth = _config(doc["resources"]["auth"])
    assert auth["name"] == "authsettingsV2"
    assert auth["properties"]["platform"]["enabled"] == "enableEntraAuth"
    assert auth["properties"]["globalValidation"]["unauthenticatedClientAction"] == "AllowAnonymous"


def _named_ids(path: Path) -> dict[str, str]:
    """``var x = '<guid>' // Name: ...`` lines: the name in the comment and the GUID."""
    pattern = re.compile(r"^var \w+ = '([0-9a-f-]{36})' // ([^:]+):", re.MULTILINE)
    return {name.strip(): guid for guid, name in pattern.findall(path.read_text())}


def test_role_ids_are_the_documented_ones() -> None:
    """Each role GUID in rbac.bicep is the built-in role its comment names, and each is assigned."""
    named = _named_ids(INFRA / "app" / "rbac.bicep")
    assert named == AZURE_ROLES
    doc = _parse(INFRA / "app" / "rbac.bicep")
    variables = {name: v["value"] for name, v in doc["variables"].items()}
    assigned = set()
    for resource in doc["resources"].values():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            role = _config(resource)["properties"]["roleDefinitionId"]["function"]["parameters"]
            assigned.update(variables[arg] for arg in role.values() if arg in variables)
    assert assigned == set(AZURE_ROLES.values())


def _assignments(doc: dict[str, Any]) -> dict[str, tuple[str, str, str, bool]]:
    """Each role assignment in a template: (role variable, scope, principal, looped)."""
    found = {}
    for name, resource in doc["resources"].items():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            config = _config(resource)
            role = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
            scope = config["scope"]
            if isinstance(scope, dict):  # hostContainers[i]
                scope = scope["operator"]["operands"]["operand_1"]
            looped = resource["config"].get("loop_type") is not None
            found[name] = (role, scope, config["properties"]["principalId"], looped)
    return found


def test_the_app_writes_blobs_only_where_the_host_does_and_only_reads_the_policy(main: dict[str, Any]) -> None:
    """Least privilege (issue 18): the runtime identity has no blob role on the account. It is Storage Blob Data Owner
    (Microsoft's role for host storage) on the containers the host and Flex write, which the template creates, and
    Storage Blob Data Reader on the policy container, so the internet-facing app cannot rewrite its own policy."""
    doc = _parse(INFRA / "app" / "rbac.bicep")
    roles = {name: v["value"] for name, v in doc["variables"].items() if isinstance(v["value"], str)}
    blob_roles = {AZURE_ROLES[r] for r in AZURE_ROLES if r.startswith("Storage Blob")}
    app = {n: a for n, a in _assignments(doc).items() if a[2] == "identityPrincipalId"}
    on_account = {roles[role] for role, scope, _, _ in app.values() if scope == "storageAccount"}
    assert on_account & blob_roles == set(), "a blob role on the whole account"
    on_policy = {roles[role] for role, scope, _, _ in app.values() if scope == "policyContainer"}
    assert on_policy == {AZURE_ROLES["Storage Blob Data Reader"]}
    on_host = {(roles[role], looped) for role, scope, _, looped in app.values() if scope == "hostContainers"}
    assert on_host == {(AZURE_ROLES["Storage Blob Data Owner"], True)}
    assert {(roles[r], s) for r, s, _, _ in app.values() if roles[r] in blob_roles} == {
        (AZURE_ROLES["Storage Blob Data Reader"], "policyContainer"),
        (AZURE_ROLES["Storage Blob Data Owner"], "hostContainers"),
    }
    looped_over = _config(doc["resources"]["hostContainers"])["name"]
    assert looped_over == "${storageAccountName}/default/${name}"
    assert doc["resources"]["hostContainers"]["existing"] is True  # created by main.bicep, not here
    # main.bicep names exactly the host's and Flex's containers, and creates each of them.
    resolver = Resolver(main)
    host = [resolver.value(n) for n in _config(main["modules"]["rbac"])["params"]["hostContainerNames"]]
    deployment = resolver.value(_function_app_module(main)["deploymentContainerUrl"]).rsplit("/", 1)[-1]
    assert sorted(host) == sorted([deployment, "azure-webjobs-hosts", "azure-webjobs-secrets"])
    created = {
        resolver.value(c["name"]) for c in _config(main["modules"]["storage"])["params"]["blobServices"]["containers"]
    }
    assert set(host) <= created and "policy" in created and "policy" not in host


def test_graph_app_roles_are_the_documented_ones() -> None:
    """Each Graph app role id is the permission its comment names; User.Invite.All and User.Read.All (the
    worker's pre-check read) are unconditional."""
    path = INFRA / "app" / "graph-permissions.bicep"
    assert _named_ids(path) == GRAPH_APP_ROLES
    doc = _parse(path)
    assert doc["variables"]["graphAppId"]["value"] == "00000003-0000-0000-c000-000000000000"
    assert "microsoftGraphV1" in doc.get("extensions", {})
    config = json.loads(re.sub(r"^\s*//.*$", "", (INFRA / "bicepconfig.json").read_text(), flags=re.MULTILINE))
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    unconditional = []
    for resource in doc["resources"].values():
        if resource["type"] == "Microsoft.Graph/appRoleAssignedTo":
            role = doc["variables"][_config(resource)["appRoleId"]]["value"]
            if "condition" not in resource["config"]:
                unconditional.append(role)
    assert unconditional == [
        GRAPH_APP_ROLES["User.Invite.All"],
        GRAPH_APP_ROLES["User.Read.All"],
        GRAPH_APP_ROLES["Domain.Read.All"],
    ]


def test_azd_parameters_match_the_template(main: dict[str, Any]) -> None:
    """main.parameters.json maps every parameter to an azd variable whose default is the template's; the form
    secret comes from azd's secretOrRandomPassword, reading the vault secret the template writes."""
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(mapped) == set(main["parameters"])
    for name, entry in mapped.items():
        if name == "formTokenSecret":
            assert entry["value"] == "$(secretOrRandomPassword ${AZURE_KEY_VAULT_NAME} form-token-secret)"
            assert main["variables"]["formTokenSecretName"]["value"] == "form-token-secret"
            continue
        match = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(?:=(.*))?\}", entry["value"])
        assert match, (name, entry)
        default = main["parameters"][name]["default"]
        if default is None:
            assert match.group(2) is None, f"{name} is required in the template but has an azd default"
        else:
            assert match.group(2) == Resolver.scalar(default), name


# siteConfig properties Flex Consumption refuses (ARM error 51021; the app settings reference, "Flex
# Consumption plan deprecations"; Azure/terraform-azurerm-avm-res-web-site#345).
FLEX_REJECTED_SITE_CONFIG = {
    "ftpsState",
    "use32BitWorkerProcess",
    "netFrameworkVersion",
    "functionsRuntimeScaleMonitoringEnabled",
    "preWarmedInstanceCount",
    "linuxFxVersion",
    "windowsFxVersion",
    "javaVersion",
    "powerShellVersion",
}


def test_site_config_sets_nothing_flex_rejects() -> None:
    """Flex Consumption refuses the whole site when siteConfig names one of these; the AVM module's default
    siteConfig sets ftpsState, so the template must pass its own."""
    site = _config(_parse(INFRA / "app" / "function-app.bicep")["modules"]["site"])["params"]
    assert "siteConfig" in site
    assert set(site["siteConfig"]) & FLEX_REJECTED_SITE_CONFIG == set()
    assert "http20Enabled" not in site["siteConfig"]  # in no Flex reference sample


def test_app_insights_retention_is_the_workspaces(main: dict[str, Any]) -> None:
    """A workspace-based component keeps its data in the workspace: one retention for both."""
    workspace = _config(main["modules"]["logAnalytics"])["params"]["dataRetention"]
    component = _config(main["modules"]["monitoring"])["params"]["retentionInDays"]
    assert workspace == component == "logRetentionDays"
    assert main["variables"]["logRetentionDays"]["value"] == 30


KEY_VAULT_REFERENCE = re.compile(
    r"@Microsoft\.KeyVault\(SecretUri=https://placeholder\.vault\.azure\.net/secrets/([a-z0-9-]+)/\)"
)


def test_secrets_are_key_vault_references(main: dict[str, Any]) -> None:
    """FORM_TOKEN_SECRET and CAPTCHA_SECRET are Key Vault references to secrets the template writes, resolved
    with the app's identity, which may read the vault's secrets (RBAC, no access policies)."""
    resolver = Resolver(main)
    raw = main["variables"]["appSettings"]["value"]
    form = KEY_VAULT_REFERENCE.fullmatch(resolver.value(raw["FORM_TOKEN_SECRET"]))
    assert form and form.group(1) == main["variables"]["formTokenSecretName"]["value"]
    # CAPTCHA_SECRET: empty while no CAPTCHA is configured, a reference once one is.
    assert resolver.value(raw["CAPTCHA_SECRET"]) == ""
    captcha = raw["CAPTCHA_SECRET"]["operator"]["operands"]["false_value"]
    captcha_ref = KEY_VAULT_REFERENCE.fullmatch(resolver.value(captcha))
    assert captcha_ref and captcha_ref.group(1) == main["variables"]["captchaSecretName"]["value"]
    # Every Key Vault reference names a secret app/secrets.bicep writes.
    secrets_doc = _parse(INFRA / "app" / "secrets.bicep")
    written = {
        _config(r)["name"]
        for r in secrets_doc["resources"].values()
        if r["type"] == "Microsoft.KeyVault/vaults/secrets"
    }
    module = _config(main["modules"]["secrets"])["params"]
    assert {module[name] for name in written} == {"formTokenSecretName", "captchaSecretName"}

    vault = _config(main["modules"]["keyVault"])["params"]
    assert main["modules"]["keyVault"]["detail"]["full"].startswith("public:avm/res/key-vault/vault:")
    assert vault["enableRbacAuthorization"] is True
    assert "accessPolicies" not in vault
    assert vault["enableVaultForTemplateDeployment"] is False
    readers = main["variables"]["appSecretReaders"]["value"]
    assert [(_accessor(r["principalId"]), r["roleDefinitionIdOrName"]) for r in readers] == [
        ("identity.outputs.principalId", "Key Vault Secrets User")
    ]
    site = _function_app_module(main)
    assert _accessor(site["keyVaultReferenceIdentityResourceId"]) == "identity.outputs.resourceId"
    inner = _config(_parse(INFRA / "app" / "function-app.bicep")["modules"]["site"])["params"]
    assert inner["keyVaultAccessIdentityResourceId"] == "keyVaultReferenceIdentityResourceId"
    assert "secrets" in _config(main["modules"]["functionApp"]).get("dependsOn", [])


def _secure_params(doc: dict[str, Any]) -> set[str]:
    return {n for n, p in doc.get("parameters", {}).items() if any(d["type"] == "secure" for d in p["decorators"])}


def _names_in(node: Any) -> set[str]:
    """Every identifier or ${...} reference anywhere in a parsed expression."""
    found: set[str] = set()
    if isinstance(node, str):
        found.add(node)
        found.update(m.strip().split(".")[0] for m in re.findall(r"\$\{([^}]*)\}", node))
    elif isinstance(node, dict):
        for value in node.values():
            found |= _names_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= _names_in(value)
    return found


SECRET_NAME = re.compile(r"secret|password", re.IGNORECASE)


def test_no_secret_flows_into_a_non_secure_place() -> None:
    """A secret stays in @secure() parameters from main.parameters.json to the Key Vault secret resource: never
    in a variable, an output, a registry module (whose parameters cannot be checked here), or a local module's
    parameter that is not @secure(). Every parameter named like a secret is @secure(), and main.parameters.json
    holds no secret value, only references azd resolves."""
    for path in sorted(INFRA.rglob("*.bicep")):
        doc = _parse(path)
        secure = _secure_params(doc)
        named = {n for n in doc.get("parameters", {}) if SECRET_NAME.search(n) and not n.endswith("Name")}
        assert named <= secure, f"{path.name}: parameters named like secrets but not @secure(): {named - secure}"
        for name, variable in doc.get("variables", {}).items():
            assert not _names_in(variable["value"]) & secure, f"{path.name}: variable {name} holds a secret"
        for name, output in doc.get("outputs", {}).items():
            assert not _names_in(output) & secure, f"{path.name}: output {name} holds a secret"
            assert not SECRET_NAME.search(name), f"{path.name}: output {name}"
        for name, module in doc.get("modules", {}).items():
            for param, value in (_config(module).get("params") or {}).items():
                if not _names_in(value) & secure:
                    continue
                assert module["type"] == "local", f"{path.name}: a secret goes to registry module {name}"
                callee = _parse((path.parent / module["detail"]["path"]).resolve())
                assert param in _secure_params(callee), f"{path.name}: a secret goes to {name}.{param}, not @secure()"
    mapped = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name in _secure_params(_parse(INFRA / "main.bicep")):
        value = mapped[name]["value"]
        assert re.fullmatch(r"\$\{[A-Z_]+=?\}|\$\(secretOrRandomPassword \$\{[A-Z_]+\} [a-z-]+\)", value), (name, value)


def test_the_secret_scan_sees_a_leak(tmp_path: Path) -> None:
    """The scan above fails on a secret passed to a non-secure module parameter and on a secret output."""
    (tmp_path / "inner.bicep").write_text("param value string\n")
    (tmp_path / "outer.bicep").write_text(
        "@secure()\nparam mySecret string\nmodule m 'inner.bicep' = {\n  name: 'm'\n  params: {\n"
        "    value: mySecret\n  }\n}\noutput leaked string = mySecret\n"
    )
    doc = _parse(tmp_path / "outer.bicep")
    secure = _secure_params(doc)
    assert secure == {"mySecret"}
    assert _names_in(doc["outputs"]["leaked"]) & secure
    inner = _parse(tmp_path / "inner.bicep")
    assert _names_in(_config(doc["modules"]["m"])["params"]["value"]) & secure
    assert "value" not in _secure_params(inner)


def test_funcignore_keeps_dev_and_infra_files_out_of_the_package() -> None:
    """The deployed package holds the app only."""
    ignored = set((INFRA.parent / ".funcignore").read_text().split())
    assert {"infra", "bench", "devhost", "graph_emulator", "tests", "scripts", "docs"} <= ignored
    assert ".github" in ignored or ".git*" in ignored


def _emitted_metrics() -> set[str]:
    """Every metric name the code records through shared.telemetry (count/record calls)."""
    names = set()
    for path in (INFRA.parent / "shared").rglob("*.py"):
        names |= set(re.findall(r'telemetry\.(?:count|record)\(\s*"([a-z_.]+)"', path.read_text()))
    return names


def test_every_alert_and_workbook_query_names_what_the_code_emits() -> None:
    """A rule over a metric or log key nobody emits would never fire: each name in alerts.bicep's queries is
    recorded by the code (metrics) or logged by it (``worker.poison*``, ``sweeper.requeued``)."""
    text = (INFRA / "app" / "alerts.bicep").read_text()
    queried = set(re.findall(r'name (?:==|in \() ?"([a-z_.]+)"', text)) | set(re.findall(r'"(signup\.[a-z_]+)"', text))
    emitted = _emitted_metrics()
    assert queried and queried <= emitted, sorted(queried - emitted)
    logged = " ".join(p.read_text() for p in (INFRA.parent / "shared").rglob("*.py"))
    for prefix in re.findall(r'message startswith \\?"([a-z_.]+)\\?"', text):
        assert f'"{prefix}' in logged, prefix
    assert re.search(r"alertRules 'Microsoft\.Insights/scheduledQueryRules@", text)


def test_the_alerts_module_is_deployed_with_the_app_insights_component(main: dict[str, Any]) -> None:
    """main.bicep deploys the alerts against the component the app reports to, with the mail parameter."""
    text = (INFRA / "main.bicep").read_text()
    block = text[text.index("module alerts 'app/alerts.bicep'") :]
    block = block[: block.index("\n}\n")]
    assert "appInsightsId: monitoring.outputs.resourceId" in block and "alertEmail: alertEmail" in block
