// The Event Grid system topic on the export account: where Blob Storage publishes the
// BlobCreated events the app's blob_created function subscribes to (event-subscription.bicep).
// Deployed into the export account's resource group, the template's own account or the
// customer's (exportStorageAccountName); a storage account has at most one system topic, so with
// an account that already has one, set exportEventsTopic to false and follow docs/deploy.md,
// "Events from an export account of your own". The topic gets a system-assigned identity: it
// writes undeliverable events to the dead-letter container (deadletter-access.bicep).
param storageAccountName string
param topicName string
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: topicName
  // A system topic lives where its source does, which may not be the app's region.
  location: account.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
