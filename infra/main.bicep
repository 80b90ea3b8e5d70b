// Everything `azd up` deploys for the sign-up portal: a resource group with a Flex Consumption (FC1)
// function app, one user-assigned managed identity used for everything, storage with shared-key access
// off, a Key Vault (RBAC) for the two secrets, Application Insights with Entra-only ingestion, a Log
// Analytics workspace and the role assignments. The identity's Microsoft Graph application permissions
// are granted after provisioning by the azd hook (scripts/azd_hooks.py deploys app/graph-permissions.bicep,
// retrying while the new identity replicates in the directory).
// docs/deploy.md, "Parameters", documents every parameter with its azd environment variable.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Azure region for every resource; it must offer Flex Consumption.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Python version of the function app.')
@allowed(['3.11', '3.12', '3.13'])
param pythonVersion string = '3.11'

@description('Memory of each instance in MB (Flex Consumption sizes).')
@allowed(['512', '2048', '4096'])
param instanceMemoryMB string = '2048'

@description('Most instances the app scales out to (1-1000). See docs/graph-and-pacing.md before raising it.')
param maximumInstanceCount string = '100'

@description('Object id of a user or service principal given Storage Blob Data Contributor on the "policy" container only (azd fills in the signed-in deployer). Empty: none.')
param policyUploaderPrincipalId string = ''

@description('SIGNUP_POLICY: name of the policy document in the "policy" container the template creates. The app reads <container URL>/<name> with its identity; until it is uploaded, sign-ups answer 500 and nobody is invited.')
param signupPolicyBlobName string = 'policy.json'

// ---------------------------------------------------------------------------------------------------
// Invitation settings (app settings INVITE_*)
// ---------------------------------------------------------------------------------------------------

@description('INVITE_REDIRECT_URL: where a guest lands after redeeming (https).')
@metadata({ example: 'https://myapps.microsoft.com/?tenantid=00000000-0000-0000-0000-000000000000' })
param inviteRedirectUrl string

@description('INVITE_USER_TYPE: Guest or Member.')
@allowed(['Guest', 'Member'])
param inviteUserType string = 'Guest'

@description('INVITE_SEND_MESSAGE: whether Microsoft sends its invitation mail.')
param inviteSendMessage bool = true

@description('INVITE_MESSAGE_LANGUAGE: language of Microsoft\'s mail, e.g. fr-FR. Empty: Microsoft\'s default.')
param inviteMessageLanguage string = ''

@description('INVITE_MESSAGE_BODY: plain-text custom message. Empty: none.')
param inviteMessageBody string = ''

@description('INVITE_CC_ADDRESS: one address copied on the invitation mail. Empty: none.')
param inviteCcAddress string = ''

@description('INVITE_SPONSOR_IDS: comma-separated object ids of sponsors (at most 5). Empty: none.')
param inviteSponsorIds string = ''

// ---------------------------------------------------------------------------------------------------
// Microsoft Graph client settings (app settings GRAPH_*)
// ---------------------------------------------------------------------------------------------------

@description('GRAPH_CLOUD: the Microsoft Graph national cloud.')
@allowed(['global', 'usgov', 'usgovdod', 'china'])
param graphCloud string = 'global'

@description('GRAPH_TIMEOUT_SECONDS: timeout of each Graph call.')
param graphTimeoutSeconds string = '30'

@description('GRAPH_PACING_ENABLED: client-side pacing inside Graph\'s write budget.')
param graphPacingEnabled bool = true

@description('GRAPH_WRITE_BUDGET: writes per window this app may make, shared by every instance (docs/graph-and-pacing.md).')
param graphWriteBudget string = '3000'

@description('GRAPH_WRITE_WINDOW_SECONDS: length of the write-budget window.')
param graphWriteWindowSeconds string = '150'

@description('GRAPH_PACING_MAX_WAIT_SECONDS: longest a write waits for its pacing slot before it goes back to the queue.')
param graphPacingMaxWaitSeconds string = '20'

@description('GRAPH_THROTTLE_MAX_WAIT_SECONDS: how long 429s are retried in place before the attempt is rescheduled.')
param graphThrottleMaxWaitSeconds string = '60'

@description('GRAPH_PACING_MODE: shared (one budget for every instance, in Table storage) or local (one instance).')
@allowed(['shared', 'local'])
param graphPacingMode string = 'shared'

@description('GRAPH_INVITATION_BUDGET: requests to /invitations per window, tenant-wide (Graph: 150 per 5 s).')
param graphInvitationBudget string = '150'

@description('GRAPH_INVITATION_WINDOW_SECONDS: length of the /invitations window.')
param graphInvitationWindowSeconds string = '5'

@description('GRAPH_PACING_FALLBACK_FRACTION: share of the budget an instance uses while the shared budget is unreachable.')
param graphPacingFallbackFraction string = '0.25'

// ---------------------------------------------------------------------------------------------------
// Retry and sweep settings (app settings SIGNUP_* and SWEEP_SCHEDULE)
// ---------------------------------------------------------------------------------------------------

@description('SIGNUP_RETRY_INITIAL_SECONDS: first delay before a transient failure is retried.')
param signupRetryInitialSeconds string = '10'

@description('SIGNUP_RETRY_MAX_SECONDS: longest delay between retries.')
param signupRetryMaxSeconds string = '300'

@description('SIGNUP_RETRY_DEADLINE_SECONDS: how long a sign-up is retried before it is recorded as failed.')
param signupRetryDeadlineSeconds string = '86400'

@description('SIGNUP_DOUBT_CAP_SECONDS: how long after its deadline a request that may have invited keeps reading the directory before it ends unknown.')
param signupDoubtCapSeconds string = '259200'

@description('Mail address for the operations alerts (docs/operations.md); empty: the alert rules fire in the portal only.')
param alertEmail string = ''

@description('Failed invitations within 15 minutes that raise an alert.')
param alertFailedThreshold int = 10

@description('Hours without a successful invitation, while sign-ups arrive, that raise an alert.')
param alertNoInvitationHours int = 6

@description('SIGNUP_REPEAT_WINDOW_SECONDS: window in which a repeated sign-up for the same address is answered with the earlier one.')
param signupRepeatWindowSeconds string = '86400'

@description('SIGNUP_QUEUED_GRACE_SECONDS: how long a sign-up may stay queued before the sweep re-enqueues it.')
param signupQueuedGraceSeconds string = '600'

@description('SWEEP_SCHEDULE: NCRONTAB schedule (six fields, with seconds) of the sweep timer function.')
param sweepSchedule string = '0 */1 * * * *'

@description('GUEST_SWEEP_SCHEDULE: NCRONTAB schedule of the guest lifecycle sweep (idle while no profile has lifecycle rules).')
param guestSweepSchedule string = '0 30 * * * *'

// ---------------------------------------------------------------------------------------------------
// Microsoft Graph application permissions of the managed identity
// ---------------------------------------------------------------------------------------------------

@description('Grant the identity its Graph app roles after provisioning (the postprovision hook; the deployer needs AppRoleAssignment.ReadWrite.All and Application.Read.All, e.g. Privileged Role Administrator). Public cloud only: the Graph Bicep extension does not deploy to national clouds. False: an administrator grants them once by hand (docs/deploy.md).')
param grantGraphPermissions bool = true

@description('Also grant GroupMember.ReadWrite.All (add guests to groups).')
param grantGroupMemberReadWrite bool = false

@description('Also grant User.ReadWrite.All (convert internal users to B2B, reset redemption).')
param grantUserReadWrite bool = false

@description('Also grant Mail.Send (the portal sends its own mail; limit it to one mailbox, see docs/deploy.md).')
param grantMailSend bool = false

// ---------------------------------------------------------------------------------------------------
// Approval, mail and audit (docs/approval-and-access.md)
// ---------------------------------------------------------------------------------------------------

@description('MAIL_SENDER: the mailbox (UPN or object id) the portal sends approver and invitation mail from. Empty: no mail (needs grantMailSend).')
param mailSender string = ''

@description('ORGANISATION_NAME: the organisation\'s name in the mail it sends.')
param organisationName string = 'the organisation'

@description('ORGANISATION_CONTACT: who guests can contact, as written in the mail.')
param organisationContact string = ''

@description('APPROVAL_DENIAL_MEMORY_SECONDS: how long a denied address is refused without a new review.')
param approvalDenialMemorySeconds string = '2592000'

@description('APPROVAL_PENDING_EXPIRY_SECONDS: how long a request waits for review before it expires.')
param approvalPendingExpirySeconds string = '1209600'

@description('MANAGE_EASY_AUTH_ROLE: only with enableEntraAuth: the app role a signed-in approver needs for /api/manage (the routes then take Easy Auth principals, not function keys). The app refuses to start with it set while Easy Auth is off.')
param manageAppRole string = ''

@description('MANAGE_CONVERT_EASY_AUTH_ROLE: only with manageAppRole: the app role a signed-in admin needs to convert internal users (POST /api/manage/conversions), a role apart from the approvers\' because a conversion cannot be undone. Empty: nobody converts through Easy Auth.')
param manageConvertAppRole string = ''

// ---------------------------------------------------------------------------------------------------
// The pages: branding, terms and abuse controls (docs/pages.md)
// ---------------------------------------------------------------------------------------------------

@description('BRAND_LOGO_URL: https URL of the logo on the pages (empty: none).')
param brandLogoUrl string = ''

@description('BRAND_PRIMARY_COLOUR: #rrggbb; white text on it must reach 4.5:1 contrast.')
param brandPrimaryColour string = '#0f6cbd'

@description('TERMS_URL and TERMS_VERSION: the terms of use a requester accepts (empty: no terms box).')
param termsUrl string = ''
param termsVersion string = ''

@description('CORS_ALLOWED_ORIGINS: comma-separated origins of partner sites that post their own forms, e.g. https://partners.contoso.com. The app answers CORS for POST /api/signups only; platform CORS stays off (it would override the app and open every route).')
param corsAllowedOrigins string = ''

@description('RATE_LIMIT_PER_IP, RATE_LIMIT_PER_DOMAIN: sign-ups per window per client IP (over it: 429) and per email domain (over it: review). See docs/abuse.md.')
param rateLimitPerIp string = '1000'
param rateLimitPerDomain string = '1000'

@description('RATE_LIMIT_WINDOW_SECONDS: length of a rate-limit window.')
param rateLimitWindowSeconds string = '600'

@description('SIGNUP_MIN_FILL_SECONDS: a page must be this old before its form is accepted.')
param signupMinFillSeconds string = '3'

@description('CAPTCHA_PROVIDER: none, turnstile, hcaptcha or recaptcha (then CAPTCHA_SITE_KEY and CAPTCHA_SECRET).')
@allowed(['none', 'turnstile', 'hcaptcha', 'recaptcha'])
param captchaProvider string = 'none'

@description('CAPTCHA_SITE_KEY: the provider\'s public site key (not a secret: the page shows it).')
param captchaSiteKey string = ''

@description('CAPTCHA_SECRET: written to the Key Vault secret "captcha-secret", which the app reads through a Key Vault reference. Empty: the secret in the vault is left as it is (set it there with az keyvault secret set, or azd env set-secret).')
@secure()
param captchaSecret string = ''

@description('FORM_TOKEN_SECRET: written to the Key Vault secret "form-token-secret". azd reads it back from the vault on every provision and generates it only when the vault has none (main.parameters.json: secretOrRandomPassword), so it stays the same across deployments.')
@secure()
param formTokenSecret string

// ---------------------------------------------------------------------------------------------------
// HTTP front door: Easy Auth
// ---------------------------------------------------------------------------------------------------

@description('Turn on App Service Authentication (Easy Auth) with Microsoft Entra ID. Anonymous requests still reach the app (AllowAnonymous); the /api/manage routes apply their own checks.')
param enableEntraAuth bool = false

@description('Application (client) id of the Entra app registration Easy Auth validates tokens for. Required when enableEntraAuth is true.')
param authClientId string = ''

@description('Tenant id of that app registration. Empty: the tenant of this deployment.')
param authTenantId string = ''

// ---------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-signup-${resourceToken}'
// Flex Consumption keeps the deployed package in this blob container.
var deploymentContainerName = 'app-package'
// The sign-up queue and table the app uses (SIGNUP_QUEUE, SIGNUP_TABLE); the host moves a message to
// '<queue>-poison' after maxDequeueCount failed deliveries (host.json).
var signupQueueName = 'signups'
var signupTableName = 'signups'
var auditTableName = 'signupaudit'
// The sign-up policy document lives in this container (SIGNUP_POLICY).
var policyContainerName = 'policy'
// The containers the Functions host keeps its own state in (the host id lock, timer schedules and locks; function
// keys), created here so the app's identity needs blob write on these and the deployment container only.
var hostsContainerName = 'azure-webjobs-hosts'
var functionKeysContainerName = 'azure-webjobs-secrets'
// Names of the Key Vault secrets the app settings reference (and azd's secretOrRandomPassword reads back).
var formTokenSecretName = 'form-token-secret'
var captchaSecretName = 'captcha-secret'
// One retention for the logs and the Application Insights component on top of them.
var logRetentionDays = 30

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------
// Identity, storage, monitoring
// ---------------------------------------------------------------------------------------------------

// The one identity of the app: host storage, the app's queue and table, the deployment package,
// Application Insights ingestion and Microsoft Graph.
module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.6.0' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-signup-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'br/public:avm/res/storage/storage-account:0.33.0' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stsignup${resourceToken}'
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: 'Standard_LRS'
    allowSharedKeyAccess: false // identities only: no account keys, no SAS
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      deleteRetentionPolicyEnabled: true
      deleteRetentionPolicyDays: 7
      containerDeleteRetentionPolicyEnabled: true
      containerDeleteRetentionPolicyDays: 7
      containers: [
        { name: deploymentContainerName }
        { name: policyContainerName }
        { name: hostsContainerName }
        { name: functionKeysContainerName }
      ]
    }
    queueServices: {
      queues: [
        { name: signupQueueName }
        { name: '${signupQueueName}-poison' }
      ]
    }
    tableServices: {
      tables: [
        { name: signupTableName }
        { name: auditTableName }
      ]
    }
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.16.1' = {
  name: 'log-analytics'
  scope: rg
  params: {
    name: 'log-signup-${resourceToken}'
    location: location
    tags: tags
    dataRetention: logRetentionDays
    features: {
      disableLocalAuth: true
    }
  }
}

module monitoring 'br/public:avm/res/insights/component:0.8.0' = {
  name: 'app-insights'
  scope: rg
  params: {
    name: 'appi-signup-${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // ingestion only with an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
    retentionInDays: logRetentionDays // a workspace-based component keeps its data in the workspace
  }
}

// Alert rules (mailed to alertEmail) and a workbook over the app's OpenTelemetry data.
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.resourceId
    alertEmail: alertEmail
    failedThreshold: alertFailedThreshold
    noInvitationHours: alertNoInvitationHours
  }
}

// The two secrets live in Key Vault (RBAC mode, no access policies). The app reads them through
// Key Vault references resolved with its identity (Key Vault Secrets User); whoever runs azd up may
// read and set them (Key Vault Secrets Officer), which azd's secretOrRandomPassword needs.
var appSecretReaders = [
  {
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionIdOrName: 'Key Vault Secrets User'
  }
]
var deployerSecretOfficers = empty(policyUploaderPrincipalId) ? [] : [
  {
    principalId: policyUploaderPrincipalId
    roleDefinitionIdOrName: 'Key Vault Secrets Officer'
  }
]

module keyVault 'br/public:avm/res/key-vault/vault:0.13.3' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-signup-${resourceToken}'
    location: location
    tags: tags
    sku: 'standard'
    enableRbacAuthorization: true
    enableVaultForDeployment: false
    enableVaultForTemplateDeployment: false
    enableVaultForDiskEncryption: false
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // Off so that `azd down --purge` can purge the vault and the environment can be created again under
    // the same name; both secrets can be made again (a new form secret only voids forms open at the time).
    enablePurgeProtection: false
    publicNetworkAccess: 'Enabled' // Flex Consumption without a virtual network reaches it publicly
    roleAssignments: concat(appSecretReaders, deployerSecretOfficers)
  }
}

module secrets 'app/secrets.bicep' = {
  name: 'secrets'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    formTokenSecretName: formTokenSecretName
    formTokenSecret: formTokenSecret
    captchaSecretName: captchaSecretName
    captchaSecret: captchaSecret
  }
}

// ---------------------------------------------------------------------------------------------------
// App settings: the function app's whole configuration (docs/settings.md). No secret values: every
// connection is the managed identity's, and the two secrets are Key Vault references.
// ---------------------------------------------------------------------------------------------------

var appSettings = {
  // Host storage, identity-based (docs/settings.md; graph/FACTS.md).
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: storage.outputs.serviceEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.outputs.serviceEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.outputs.serviceEndpoints.table
  SIGNUP_QUEUE: signupQueueName
  SIGNUP_TABLE: signupTableName
  SIGNUP_POLICY: '${storage.outputs.serviceEndpoints.blob}${policyContainerName}/${signupPolicyBlobName}'
  // The policy is on the app's own account: no other host may receive the storage token.
  SIGNUP_POLICY_ALLOWED_HOSTS: ''
  // Invitation.
  INVITE_REDIRECT_URL: inviteRedirectUrl
  INVITE_USER_TYPE: inviteUserType
  INVITE_SEND_MESSAGE: string(inviteSendMessage)
  INVITE_MESSAGE_LANGUAGE: inviteMessageLanguage
  INVITE_MESSAGE_BODY: inviteMessageBody
  INVITE_CC_ADDRESS: inviteCcAddress
  INVITE_SPONSOR_IDS: inviteSponsorIds
  // Microsoft Graph through the user-assigned identity.
  GRAPH_CLOUD: graphCloud
  GRAPH_CREDENTIAL: 'managed_identity'
  AZURE_CLIENT_ID: identity.outputs.clientId
  GRAPH_TIMEOUT_SECONDS: graphTimeoutSeconds
  GRAPH_PACING_ENABLED: string(graphPacingEnabled)
  GRAPH_WRITE_BUDGET: graphWriteBudget
  GRAPH_WRITE_WINDOW_SECONDS: graphWriteWindowSeconds
  GRAPH_PACING_MAX_WAIT_SECONDS: graphPacingMaxWaitSeconds
  GRAPH_THROTTLE_MAX_WAIT_SECONDS: graphThrottleMaxWaitSeconds
  GRAPH_PACING_MODE: graphPacingMode
  GRAPH_INVITATION_BUDGET: graphInvitationBudget
  GRAPH_INVITATION_WINDOW_SECONDS: graphInvitationWindowSeconds
  GRAPH_PACING_FALLBACK_FRACTION: graphPacingFallbackFraction
  // Retries and the sweep (the sweep's timer trigger binds %SWEEP_SCHEDULE%).
  SIGNUP_RETRY_INITIAL_SECONDS: signupRetryInitialSeconds
  SIGNUP_RETRY_MAX_SECONDS: signupRetryMaxSeconds
  SIGNUP_RETRY_DEADLINE_SECONDS: signupRetryDeadlineSeconds
  SIGNUP_DOUBT_CAP_SECONDS: signupDoubtCapSeconds
  SIGNUP_REPEAT_WINDOW_SECONDS: signupRepeatWindowSeconds
  SIGNUP_QUEUED_GRACE_SECONDS: signupQueuedGraceSeconds
  SWEEP_SCHEDULE: sweepSchedule
  GUEST_SWEEP_SCHEDULE: guestSweepSchedule
  // Approval, mail and the audit trail.
  SIGNUP_AUDIT_TABLE: auditTableName
  MAIL_SENDER: mailSender
  ORGANISATION_NAME: organisationName
  ORGANISATION_CONTACT: organisationContact
  APPROVAL_DENIAL_MEMORY_SECONDS: approvalDenialMemorySeconds
  APPROVAL_PENDING_EXPIRY_SECONDS: approvalPendingExpirySeconds
  // Trusted only with Easy Auth in front (the platform then sets WEBSITE_AUTH_ENABLED=true).
  MANAGE_EASY_AUTH_ROLE: manageAppRole
  MANAGE_CONVERT_EASY_AUTH_ROLE: manageConvertAppRole
  // The pages.
  BRAND_LOGO_URL: brandLogoUrl
  BRAND_PRIMARY_COLOUR: brandPrimaryColour
  TERMS_URL: termsUrl
  TERMS_VERSION: termsVersion
  CORS_ALLOWED_ORIGINS: corsAllowedOrigins
  RATE_LIMIT_PER_IP: rateLimitPerIp
  RATE_LIMIT_PER_DOMAIN: rateLimitPerDomain
  RATE_LIMIT_WINDOW_SECONDS: rateLimitWindowSeconds
  RATE_LIMIT_SYNC_SECONDS: '1'
  TRUSTED_FORWARDED_HOPS: '1'
  // Signs the pages' form tokens: a random secret kept in Key Vault (versionless reference: the current version).
  FORM_TOKEN_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/${formTokenSecretName}/)'
  SIGNUP_MIN_FILL_SECONDS: signupMinFillSeconds
  CAPTCHA_PROVIDER: captchaProvider
  CAPTCHA_SITE_KEY: captchaSiteKey
  CAPTCHA_SECRET: (captchaProvider == 'none') ? '' : '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.uri}secrets/${captchaSecretName}/)'
  // Application Insights, Entra-authenticated ingestion as the identity.
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'
  // host.json's telemetryMode OpenTelemetry: the Python worker joins the host's traces (shared/telemetry).
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  TELEMETRY_CONSOLE: 'false'
}

// ---------------------------------------------------------------------------------------------------
// The function app
// ---------------------------------------------------------------------------------------------------

module plan 'br/public:avm/res/web/serverfarm:0.7.0' = {
  name: 'plan'
  scope: rg
  params: {
    name: 'plan-signup-${resourceToken}'
    location: location
    tags: tags
    skuName: 'FC1' // Flex Consumption
    kind: 'functionapp'
    reserved: true // Linux
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: union(tags, { 'azd-service-name': 'api' })
    planResourceId: plan.outputs.resourceId
    identityResourceId: identity.outputs.resourceId
    keyVaultReferenceIdentityResourceId: identity.outputs.resourceId
    deploymentContainerUrl: '${storage.outputs.serviceEndpoints.blob}${deploymentContainerName}'
    pythonVersion: pythonVersion
    instanceMemoryMB: int(instanceMemoryMB)
    maximumInstanceCount: int(maximumInstanceCount)
    appSettings: appSettings
    enableEntraAuth: enableEntraAuth
    authClientId: authClientId
    authTenantId: empty(authTenantId) ? tenant().tenantId : authTenantId
  }
  dependsOn: [rbac, secrets] // the host starts with its storage roles and its secrets in place
}

// ---------------------------------------------------------------------------------------------------
// Access: Azure roles. The Graph app roles are granted by the postprovision hook (see the top).
// ---------------------------------------------------------------------------------------------------

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.name
    identityPrincipalId: identity.outputs.principalId
    hostContainerNames: [deploymentContainerName, hostsContainerName, functionKeysContainerName]
    policyContainerName: policyContainerName
    policyUploaderPrincipalId: policyUploaderPrincipalId
  }
}

// ---------------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment: `azd env get-values`)
// ---------------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostname}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output POLICY_CONTAINER_URL string = '${storage.outputs.serviceEndpoints.blob}${policyContainerName}'
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
// What the postprovision hook grants (scripts/azd_hooks.py reads these from the azd environment).
output GRAPH_GRANT_ENABLED bool = grantGraphPermissions
output GRAPH_GRANT_GROUP_MEMBER_READWRITE bool = grantGroupMemberReadWrite
output GRAPH_GRANT_USER_READWRITE bool = grantUserReadWrite
output GRAPH_GRANT_MAIL_SEND bool = grantMailSend
