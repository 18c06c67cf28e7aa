// Private endpoints, with private DNS zones linked to the app's virtual network, for the storage
// accounts and the vault when privateNetworking is on (main.bicep). Each target then turns its
// public network access off: the app reaches it through its subnet, Customer Insights writes the
// export account over Private Link, and the Flex Consumption publishing service writes the
// deployment package through the app's own network integration, as Microsoft's Flex
// Consumption azd sample does with its storage.
param location string
param tags object = {}
param vnetId string
param subnetId string
param namePrefix string

@description('Each endpoint: a short key (unique), the target resource\'s ID, and its sub-resource (blob, queue, table or vault).')
param endpoints array

var zones = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  vault: 'privatelink.vaultcore.azure.net'
}
var groups = [
  'blob'
  'queue'
  'table'
  'vault'
]

resource dnsZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for group in groups: {
  name: zones[group]
  location: 'global'
  tags: tags
}]

resource dnsLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (group, index) in groups: {
  parent: dnsZones[index]
  name: '${namePrefix}-${group}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [for endpoint in endpoints: {
  name: '${namePrefix}-${endpoint.key}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: '${namePrefix}-${endpoint.key}'
        properties: {
          privateLinkServiceId: endpoint.id
          groupIds: [
            endpoint.group
          ]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [for (endpoint, index) in endpoints: {
  parent: privateEndpoints[index]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.group
        properties: {
          privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zones[endpoint.group])
        }
      }
    ]
  }
}]
