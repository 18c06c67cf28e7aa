// The app's own storage account (AzureWebJobsStorage): host state (leases, keys, timer status),
// the jobs queue, the runs table and the app's other tables, and the personal data the app keeps:
// encrypted mirror state and spilled digests. The code package is in another account
// (container-account.bicep). Entra ID only (shared keys off), TLS 1.2, no anonymous blob
// access, and reachable only from the app's subnet (service endpoint) and trusted Azure services.
param name string
param location string
param tags object = {}
param appSubnetId string
param jobsQueueName string
param runsTableName string
@description('Container where runs spill digests (encrypted under a key only the run held); a lifecycle rule deletes what a crashed run left.')
param spillContainerName string
@description('Container where Event Grid writes the export account\'s events it could not deliver to the app (export-events.bicep, event-subscription.bicep).')
param deadLetterContainerName string

@description('Create private endpoints for it (private-link.bicep) and turn its public network access off.')
param privateNetworking bool = false

@description('A CanNotDelete lock on the account.')
param deleteLock bool = true

@description('The Log Analytics workspace its blob (and queue and table) logs go to.')
param workspaceId string

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: Host state, queue and run records are regional working data of a single-region app; geo-replication adds cost without a failover path. Pick another SKU with the storageSkuName parameter.
  // checkov:skip=CKV_AZURE_59: With privateNetworking off, the public endpoint must stay on for the service-endpoint rule below to admit the app's subnet, and networkAcls deny every other network; with it on, public network access is Disabled.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [
        {
          id: appSubnetId
          action: 'Allow'
        }
      ]
      ipRules: []
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

// Deleting here is final. The account holds personal data (mirror state in STATE_CONTAINER,
// spilled digests in SPILL_CONTAINER) that a purge, the orphan timer, a run's end or the
// lifecycle rule below must erase, so no copy may outlive them: no blob or container soft
// delete (each overwrite of a state set would also keep the old one), no versions, no change
// feed, no point-in-time restore (docs/deploy.md, "Erasure is final"). Off explicitly, so
// that a deployment also turns them off on an account where they were on.
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: false
    }
    containerDeleteRetentionPolicy: {
      enabled: false
    }
    isVersioningEnabled: false
    changeFeed: {
      enabled: false
    }
    restorePolicy: {
      enabled: false
    }
  }
}

// Written by the export account's system topic with its own identity (deadletter-access.bicep):
// each event it gave up on, as a blob, to read when troubleshooting (docs/deploy.md).
resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// A run deletes its spilled digests when it ends; one that crashed leaves files encrypted
// under a key that died with it. This rule deletes those a day later.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-spilled-digests'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${spillContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: jobsQueueName
}

// Where the host moves a job after its last failed delivery; created here so that it exists
// (and can be watched) before the first failure.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-poison'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource runsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: runsTableName
}

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

resource lock 'Microsoft.Authorization/locks@2020-05-01' = if (deleteLock) {
  name: '${storage.name}-no-delete'
  scope: storage
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds the app\'s host state, its jobs queue, run records and mirror state; remove the lock before deleting the account.'
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
