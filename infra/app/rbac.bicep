// Every role the app's identity holds inside the app's resource group, each at the narrowest scope
// that works. (Reading an existing Customer Insights account elsewhere is in export-access.bicep.)
param principalId string
param storageAccountName string
param keyVaultName string
param applicationInsightsName string
param deploymentStorageAccountName string
param deploymentContainerName string

@description('The identity the platform publishes and loads the code package with (not the one the app\'s code runs as).')
param principalIdForPackage string

@description('Export account created by main.bicep (container-account.bicep); empty when the export source is an existing account.')
param exportStorageAccountName string = ''
param exportContainerName string = ''

@description('Names of the refresh-token secrets the app may write new versions of. Each must already exist.')
param refreshTokenSecretNames array = []

// Storage Blob Data Owner: the Functions host keeps leases, function keys and timer state in
// containers it creates itself (runtime account only).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Queue Data Contributor: the queue trigger reads and deletes jobs, the app sends them,
// and the host moves failed ones to the poison queue (runtime account only).
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Storage Table Data Contributor: the run log (create-if-missing is an account-level call).
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Storage Blob Data Contributor: the Flex Consumption publishing service uploads the app's
// package as the package identity, and instances read it at start (deployment container
// only). The identity the app's code runs as has no right on it: the code cannot replace itself.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Blob Data Reader: list and read the Customer Insights export files (export container).
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// Key Vault Secrets User: read the Snapchat client id, client secret and refresh token.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// Key Vault Secrets Officer: write a new version of a refresh token after Snapchat rotates it
// (assigned on each refresh-token secret, never on the vault).
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
// Monitoring Metrics Publisher: send telemetry to Application Insights, whose local
// (instrumentation key) authentication is disabled.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

var createdExportSource = !empty(exportStorageAccountName)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${deploymentStorageAccountName}/default/${deploymentContainerName}'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource refreshTokenSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for secretName in refreshTokenSecretNames: {
  parent: vault
  name: secretName
}]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource exportContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = if (createdExportSource) {
  name: '${exportStorageAccountName}/default/${exportContainerName}'
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

resource packageContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, principalIdForPackage, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    principalId: principalIdForPackage
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}

resource exportReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createdExportSource) {
  name: guid(exportContainer.id, principalId, storageBlobDataReader)
  scope: exportContainer
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource refreshTokenOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (secretName, i) in refreshTokenSecretNames: {
  name: guid(refreshTokenSecrets[i].id, principalId, keyVaultSecretsOfficer)
  scope: refreshTokenSecrets[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}]

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}
