// Azure role assignments: what the app's managed identity may do on storage and Application Insights,
// and (optionally) who may upload the sign-up policy document.

param storageAccountName string
param appInsightsName string

@description('Object (principal) id of the app\'s user-assigned managed identity.')
param identityPrincipalId string

@description('The blob containers the Functions host and Flex Consumption write: its own state (azure-webjobs-hosts: host id lock, timer schedule and locks; azure-webjobs-secrets: function keys) and the deployment package. The template creates them, so no account-wide right to create containers is needed.')
param hostContainerNames array

@description('The container of the sign-up policy document: the app may read it, never write it.')
param policyContainerName string

@description('Principal given Storage Blob Data Contributor on the policy container only. Empty: none.')
param policyUploaderPrincipalId string = ''

// Built-in role definition ids (the same in every tenant).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner: host state and deployment package containers only
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor: sign-up and poison queues
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor: sign-up table
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher: Entra-authenticated telemetry ingestion
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor: upload the policy document
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader: the app reads the policy document

resource storageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource policyContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = {
  name: '${storageAccountName}/default/${policyContainerName}'
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' existing = [
  for name in hostContainerNames: {
    name: '${storageAccountName}/default/${name}'
  }
]

// Blob write only where the host and Flex write (Microsoft's host storage role, Storage Blob Data Owner, scoped to
// those containers), not on the account: the internet-facing app cannot rewrite its own policy (docs/deploy.md).
resource hostBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in hostContainerNames: {
    name: guid(hostContainers[i].id, identityPrincipalId, storageBlobDataOwnerRoleId)
    scope: hostContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
      principalId: identityPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource policyReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(policyContainer.id, identityPrincipalId, storageBlobDataReaderRoleId)
  scope: policyContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReaderRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, storageQueueDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, storageTableDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identityPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource policyUploader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(policyUploaderPrincipalId)) {
  name: guid(policyContainer.id, policyUploaderPrincipalId, storageBlobDataContributorRoleId)
  scope: policyContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: policyUploaderPrincipalId
    // No principalType: the deployer may be a user (azd up) or a service principal (GitHub Actions).
  }
}
