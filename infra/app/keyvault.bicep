// The vault for the Snapchat credentials. It is created empty: the operator adds the secrets
// after deployment (see the README, "Deploy to Azure"), so no secret value ever passes through a template or its
// deployment history. Access is by Azure RBAC only; soft delete and purge protection keep a
// deleted vault or secret recoverable.
param name string
param location string
param tags object = {}
param appSubnetId string

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
    publicNetworkAccess: 'Enabled'
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

output name string = vault.name
output uri string = vault.properties.vaultUri
