// The vault for the Snapchat credentials. It is created empty: the operator adds the secrets
// after deployment (see the README, "Deploy to Azure"), so no secret value ever passes through a template or its
// deployment history. Access is by Azure RBAC only; soft delete and purge protection keep a
// deleted vault or secret recoverable.
param name string
param location string
param tags object = {}
param appSubnetId string

@description('Create a private endpoint for it (private-link.bicep) and turn its public network access off.')
param privateNetworking bool = false

@description('A CanNotDelete lock on the vault.')
param deleteLock bool = true

@description('The Log Analytics workspace its audit events go to.')
param workspaceId string

@description('Public IPv4 addresses or CIDR ranges allowed through the vault firewall (the operator who sets the secrets).')
param operatorIpAddresses array = []

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // Written as a string, not a bare ternary: checkov 3.3 crashes on a ternary here and then
    // never runs CKV_AZURE_189 (tests/test_infra.py fails on such a crash).
    #disable-next-line simplify-interpolation
    publicNetworkAccess: '${privateNetworking ? 'Disabled' : 'Enabled'}'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [
        {
          id: appSubnetId
          ignoreMissingVnetServiceEndpoint: false
        }
      ]
      ipRules: [for address in operatorIpAddresses: {
        value: address
      }]
    }
  }
}

// Who read or changed which secret, and when: every data-plane call, in Log Analytics.
resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

resource lock 'Microsoft.Authorization/locks@2020-05-01' = if (deleteLock) {
  name: '${vault.name}-no-delete'
  scope: vault
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds the Snapchat credentials and the mirror-state key; remove the lock before deleting the vault.'
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
