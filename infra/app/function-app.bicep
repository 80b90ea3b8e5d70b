// The Flex Consumption function app (Azure Verified Module), its app settings, CORS, and optional
// App Service Authentication (Easy Auth) with Microsoft Entra ID.

@description('Name of the function app.')
param name string

param location string = resourceGroup().location

param tags object = {}

@description('Resource id of the Flex Consumption (FC1) plan.')
param planResourceId string

@description('Resource id of the user-assigned identity the app runs as.')
param identityResourceId string

@description('URL of the blob container Flex Consumption deploys the package from.')
param deploymentContainerUrl string

@allowed(['3.11', '3.12', '3.13'])
param pythonVersion string

@allowed([512, 2048, 4096])
param instanceMemoryMB int

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('The app settings, complete: what is not here is not set (current settings are not retained).')
param appSettings object

@description('Turn on Easy Auth with Microsoft Entra ID (anonymous requests still pass).')
param enableEntraAuth bool = false

@description('Application (client) id Easy Auth validates tokens for.')
param authClientId string = ''

@description('Tenant of that app registration.')
param authTenantId string = tenant().tenantId

@description('Resource id of the user-assigned identity that resolves the app settings\' Key Vault references.')
param keyVaultReferenceIdentityResourceId string

module site 'br/public:avm/res/web/site:0.24.0' = {
  name: 'site'
  params: {
    name: name
    location: location
    tags: tags
    kind: 'functionapp,linux'
    serverFarmResourceId: planResourceId
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    managedIdentities: {
      userAssignedResourceIds: [identityResourceId]
    }
    // Key Vault references (@Microsoft.KeyVault(SecretUri=...)) are resolved with this identity, not a system one.
    keyVaultAccessIdentityResourceId: keyVaultReferenceIdentityResourceId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      // Flex Consumption takes the language here; FUNCTIONS_WORKER_RUNTIME is not an app setting on it.
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    // Flex Consumption refuses a site whose siteConfig names a property it does not support (ARM error 51021:
    // ftpsState, use32BitWorkerProcess, netFrameworkVersion, functionsRuntimeScaleMonitoringEnabled,
    // preWarmedInstanceCount, linuxFxVersion; the app settings reference, "Flex Consumption plan deprecations").
    // The AVM module's default siteConfig sets ftpsState, so this object must be given in full. http20Enabled
    // is left out as Microsoft's Flex samples leave it out; FTP is off through basicPublishingCredentialsPolicies.
    siteConfig: {
      alwaysOn: false // Flex Consumption scales to zero
      minTlsVersion: '1.2'
      // Platform CORS off: it would answer every route's preflight and override the app's own CORS, which
      // opens POST /api/signups alone to CORS_ALLOWED_ORIGINS (docs/pages.md).
      cors: {
        allowedOrigins: []
        supportCredentials: false
      }
    }
    // No publishing passwords: azd and GitHub deploy with Entra tokens.
    basicPublishingCredentialsPolicies: [
      { name: 'ftp', allow: false }
      { name: 'scm', allow: false }
    ]
    configs: [
      {
        name: 'appsettings'
        properties: appSettings
        retainCurrentAppSettings: false // the template is the whole configuration
      }
    ]
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: name
}

// Easy Auth, deployed always and switched by enableEntraAuth (so that turning the parameter off on a
// redeploy turns it off in Azure too). When on, it validates Entra tokens and passes the caller's
// identity to the app (X-MS-CLIENT-PRINCIPAL headers); AllowAnonymous keeps the anonymous sign-up
// routes working, and the admin routes under /api/manage decide for themselves whom to serve.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies its site checks to every Microsoft.Web/sites/config; these are about siteConfig or the site:
  // checkov:skip=CKV_AZURE_13:this resource IS the App Service Authentication setting; it is on when enableEntraAuth is true, and the anonymous sign-up API needs AllowAnonymous
  // checkov:skip=CKV_AZURE_63:HTTP logging is a siteConfig property, not one of authsettingsV2; the app logs to Application Insights
  // checkov:skip=CKV_AZURE_65:detailed error messages are a siteConfig property, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_66:failed request tracing is a siteConfig property, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_80:.NET Framework version does not apply: a Python app, and a siteConfig property
  // checkov:skip=CKV_AZURE_88:Azure Files mounts are a site property; Flex Consumption runs from its deployment blob container
  // checkov:skip=CKV_AZURE_222:a public sign-up form must be reachable from the internet; public network access is a site property
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: enableEntraAuth
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: enableEntraAuth
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: empty(authClientId) ? [] : [authClientId, 'api://${authClientId}']
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
  dependsOn: [site]
}

output name string = site.outputs.name
output defaultHostname string = site.outputs.defaultHostname
