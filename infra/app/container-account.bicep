// A storage account holding one private blob container that a Microsoft service outside the app's
// virtual network writes to. Used twice by main.bicep:
// - the deployment package container: the Flex Consumption publishing service (azd deploy, Core
//   Tools, az functionapp deployment) uploads the app's zip here;
// - the export container, when no existing Customer Insights account is given: Customer Insights
//   writes segment exports here.
// Such a writer has no fixed addresses and does not come through the app's subnet, so the network
// stays open; every request needs an Entra ID token with a data role on the container (shared keys
// off, no anonymous access). Keeping these apart from the runtime account is also what makes the
// app's container-scoped roles meaningful: on the runtime account it owns every blob anyway.
param name string
param location string
param tags object = {}
param containerName string

@description('Create private endpoints for it (private-link.bicep) and turn its public network access off.')
param privateNetworking bool = false

@description('A CanNotDelete lock on the account.')
param deleteLock bool = true

@description('The Log Analytics workspace its blob (and queue and table) logs go to.')
param workspaceId string

@description('Delete blobs this many days after they were last written (0: keep them). The export account: Customer Insights writes a new snapshot each refresh and the app reads only the newest.')
param deleteAfterDays int = 0

@description('Blob soft delete. Off for the export account: Customer Insights documents that its exports fail on an account with soft delete on.')
param softDelete bool = true

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: With privateNetworking off, its writer (Customer Insights, or the Flex Consumption publishing service) reaches it from Microsoft-hosted addresses outside the app's subnet that no firewall rule can list, and access is Entra ID only (shared keys off, no anonymous access); with privateNetworking on, public network access is Disabled and the writer comes over Private Link.
  // checkov:skip=CKV_AZURE_59: Same reason as CKV_AZURE_35: open only with privateNetworking off, for that writer; every request needs an Entra ID token with a data role on the container.
  // checkov:skip=CKV_AZURE_206: Both uses hold reproducible files (an app package azd can upload again, exports Customer Insights can write again); geo-replication would add cost without protecting anything. Pick another SKU with the storageSkuName parameter.
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
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
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
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: softDelete
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: softDelete
      days: 7
    }
    // No versions and no change feed, on either use: an export's old snapshots must go when
    // the lifecycle rule deletes them.
    isVersioningEnabled: false
    changeFeed: {
      enabled: false
    }
  }
}

// Old snapshots: cleartext personal data the app no longer reads.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (deleteAfterDays > 0) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-old-snapshots'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deleteAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
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

resource lock 'Microsoft.Authorization/locks@2020-05-01' = if (deleteLock) {
  name: '${storage.name}-no-delete'
  scope: storage
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds files the app and Customer Insights exchange; remove the lock before deleting the account.'
  }
}

output id string = storage.id
output name string = storage.name
output containerName string = container.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
