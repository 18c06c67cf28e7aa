// The one right the export account's system topic has: writing undeliverable events into the
// dead-letter container of the app's runtime account (storage.bicep), and nothing else.
param storageAccountName string
param containerName string
@description('The system topic\'s system-assigned identity.')
param principalId string

// Storage Blob Data Contributor: Event Grid writes each dead-lettered event as a blob
// (dead-letter container only).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${containerName}'
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, principalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}
