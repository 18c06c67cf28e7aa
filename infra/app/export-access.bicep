// Used when the export source is an existing Customer Insights account (deployed into that
// account's resource group): the app's identity may read the export container, or the whole
// account when no container is named (exports in several containers). Nothing else changes on
// that account.
param storageAccountName string
param containerName string = ''
param principalId string

// Storage Blob Data Reader: list and read the Customer Insights export files.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

var containerScope = !empty(containerName)

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = if (containerScope) {
  name: '${storageAccountName}/default/${containerName}'
}

resource containerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (containerScope) {
  name: guid(container.id, principalId, storageBlobDataReader)
  scope: container
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}

resource accountReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!containerScope) {
  name: guid(account.id, principalId, storageBlobDataReader)
  scope: account
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}

output blobEndpoint string = account.properties.primaryEndpoints.blob
