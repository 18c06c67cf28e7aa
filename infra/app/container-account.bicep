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

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Its writer (Customer Insights, or the Flex Consumption publishing service) reaches it from Microsoft-hosted addresses outside the app's subnet that no firewall rule can list; access is Entra ID only (shared keys off, no anonymous access).
  // checkov:skip=CKV_AZURE_59: Same reason as CKV_AZURE_35: the public endpoint must stay reachable for that writer; every request needs an Entra ID token with a data role on the container.
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
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
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
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
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

output name string = storage.name
output containerName string = container.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
