// A virtual network for the Flex Consumption app's outbound traffic. The subnet 'app' is delegated
// to Microsoft.App/environments (what Flex Consumption integrates with) and carries service
// endpoints for Storage and Key Vault, so the runtime storage account and the vault can deny every
// network except this subnet (and the operator's IP addresses, for the vault). The subnet
// 'private-endpoints' holds the private endpoints of the storage accounts and the vault when
// privateNetworking is on (main.bicep).
//
// Outbound traffic is restricted by the NSG to HTTPS: to Azure services by service tag (Storage,
// Key Vault, Entra ID, Azure Monitor), to the private endpoints in the virtual network, and to the
// Internet for the Snapchat API, which publishes no address ranges (an Azure Firewall or a proxy
// with FQDN rules for adsapi.snapchat.com and accounts.snapchat.com narrows that further). DNS to
// Azure's resolver is allowed; everything else outbound is denied. With natGateway on, the app's
// calls leave through one fixed public address (a NAT gateway on the subnet).
param vnetName string
param nsgName string
param location string
param tags object = {}
param addressPrefix string = '10.40.0.0/16'
param appSubnetPrefix string = '10.40.1.0/24'
param privateEndpointSubnetPrefix string = '10.40.2.0/24'

@description('Route the app\'s outbound calls through a NAT gateway with one fixed public IP address.')
param natGateway bool = false
param natGatewayName string = ''
param publicIpName string = ''

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'

// Outbound rules, each HTTPS (443) to one destination; the last rule denies the rest.
var allowedOutbound = [
  {
    name: 'https-to-storage'
    destination: 'Storage'
    priority: 100
  }
  {
    name: 'https-to-key-vault'
    destination: 'AzureKeyVault'
    priority: 110
  }
  {
    name: 'https-to-entra-id'
    destination: 'AzureActiveDirectory'
    priority: 120
  }
  {
    name: 'https-to-azure-monitor'
    destination: 'AzureMonitor'
    priority: 130
  }
  {
    name: 'https-to-private-endpoints'
    destination: 'VirtualNetwork'
    priority: 140
  }
  {
    name: 'https-to-snapchat-api'
    destination: 'Internet'
    priority: 150
  }
]

var allowRules = [for rule in allowedOutbound: {
  name: rule.name
  properties: {
    direction: 'Outbound'
    access: 'Allow'
    protocol: 'Tcp'
    priority: rule.priority
    sourceAddressPrefix: 'VirtualNetwork'
    sourcePortRange: '*'
    destinationAddressPrefix: rule.destination
    destinationPortRange: '443'
  }
}]

// DNS to Azure's resolver, and nothing else.
var lastRules = [
  {
    name: 'dns-to-azure'
    properties: {
      direction: 'Outbound'
      access: 'Allow'
      protocol: '*'
      priority: 300
      sourceAddressPrefix: 'VirtualNetwork'
      sourcePortRange: '*'
      destinationAddressPrefix: '168.63.129.16/32'
      destinationPortRange: '53'
    }
  }
  {
    name: 'deny-other-outbound'
    properties: {
      direction: 'Outbound'
      access: 'Deny'
      protocol: '*'
      priority: 4000
      sourceAddressPrefix: '*'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '*'
    }
  }
]

resource nsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: nsgName
  location: location
  tags: tags
  properties: {
    // No inbound rules: the app's inbound traffic arrives through the platform's front ends,
    // not through this subnet, which only carries the app's outbound calls.
    securityRules: concat(allowRules, lastRules)
  }
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = if (natGateway) {
  name: publicIpName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource nat 'Microsoft.Network/natGateways@2023-11-01' = if (natGateway) {
  name: natGatewayName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: publicIp.id
      }
    ]
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
          natGateway: natGateway ? {
            id: nat.id
          } : null
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
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, privateEndpointSubnetName)
output vnetId string = vnet.id
output vnetName string = vnet.name
output outboundIpAddress string = natGateway ? publicIp.properties.ipAddress : ''
