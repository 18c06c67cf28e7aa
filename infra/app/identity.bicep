// A user-assigned identity of the function app: the one its code runs as (storage, Key Vault,
// Application Insights), or the one the platform publishes and loads the code package with.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
