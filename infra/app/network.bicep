// A virtual network for the Flex Consumption app's outbound traffic. The one subnet is delegated to
// Microsoft.App/environments (what Flex Consumption integrates with) and carries service endpoints
// for Storage and Key Vault, so the runtime storage account and the vault can deny every network
// except this subnet (and the operator's IP addresses, for the vault). Calls to the Snapchat API
// leave through Azure's default outbound access of this subnet; attach a NAT gateway to the
// subnet if Snapchat or a proxy needs one fixed source address.
param vnetName string
param nsgName string
param location string
param tags object = {}
param addressPrefix string = '10.40.0.0/16'
param appSubnetPrefix string = '10.40.1.0/24'

var appSubnetName = 'app'

resource nsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: nsgName
  location: location
  tags: tags
  properties: {
    // No inbound rules: the app's inbound traffic arrives through the platform's front ends,
    // not through this subnet, which only carries the app's outbound calls.
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
            {
              service: 'Microsoft.KeyVault'
            }
          ]
        }
      }
    ]
  }
}

output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output vnetName string = vnet.name
