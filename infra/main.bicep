// Everything the Customer Insights → Snapchat export app needs, in one resource group:
// a Flex Consumption function app (Python 3.11) running as one user-assigned identity, its
// runtime storage, an export source, an empty Key Vault for the Snapchat credentials, and
// Application Insights on Log Analytics. `azd up` (or `az deployment sub create`) deploys it.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd): used in the resource group name and to derive unique resource names.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or reuse. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances the app scales out to (1-1000). Low by default: every instance can call the Snapchat API at once.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Replication of the storage accounts this template creates.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Existing storage account that Customer Insights exports into. Empty: a dedicated export account is created.')
param exportStorageAccountName string = ''

@description('Resource group of exportStorageAccountName, in this subscription. Empty: the app\'s resource group.')
param exportStorageResourceGroup string = ''

@description('Export container. Created when no existing account is given. With an existing account the app may read only this container; empty grants read on the whole account.')
param exportContainerName string = 'customer-insights'

@description('Comma-separated Snapchat connection names (exports.json) whose refresh-token secret the app may rewrite, e.g. "main". Leave empty until the secrets exist in the vault (see the README, "Deploy to Azure").')
param snapchatConnections string = ''

@description('Comma-separated public IPv4 addresses or CIDR ranges allowed through the Key Vault firewall, e.g. the operator\'s address for setting the secrets.')
param operatorIpAddresses string = ''

@description('NCRONTAB schedule (UTC) of the timer that looks for new Customer Insights snapshots.')
param exportSchedule string = '0 */15 * * * *'

@description('Client ID of the Entra ID app registration that signs callers in and defines the roles Exporter.Admin, Exporter.Operator and Exporter.Reader (docs/deploy.md). Empty: nobody can sign in until it is set.')
param authClientId string = ''

@description('Comma-separated e-mail addresses (no trailing comma) to notify when an export fails, goes stale, has its Snapchat credentials refused or is stopped by the removal safeguard. Empty (and no webhook): the alerts exist without an action group.')
param alertEmails string = ''

@secure()
@description('Optional webhook URL the alerts also call, with the common alert schema (e.g. a Logic App or Teams Workflow that posts to a channel).')
param alertWebhookUrl string = ''

@minValue(1)
@maxValue(168)
@description('Hours an enabled export may have a settled snapshot without a successful run before the stale-audience alert fires.')
param staleAfterHours int = 6

@description('Private endpoints (with private DNS zones) for the runtime, deployment and export storage accounts and the vault, whose public network access is then off. Customer Insights must then write the export account over Private Link (docs/deploy.md). With an existing export account, give it a private endpoint yourself.')
param privateNetworking bool = false

@description('Send the app\'s outbound calls through a NAT gateway with one fixed public IP address (e.g. for a proxy or an allow-list).')
param natGateway bool = false

@description('CanNotDelete locks on the vault and the storage accounts this template creates.')
param resourceLocks bool = true

@description('An Event Grid system topic on the export account (the one created here, or exportStorageAccountName in its resource group), so a new snapshot starts its run within a minute instead of at the next timer. false: an account that already has a system topic (one per account), or events you set up yourself (docs/deploy.md).')
param exportEvents bool = true

@description('The topic\'s subscription to the app\'s blob_created function. Set it (azd env set EXPORT_EVENT_SUBSCRIPTION true) after the first code deployment: Event Grid validates the function\'s webhook when the subscription is created.')
param exportEventSubscription bool = false

@minValue(0)
@maxValue(365)
@description('Days after which Customer Insights snapshots in the export account this template creates are deleted (0: kept). The app reads only the newest.')
param exportRetentionDays int = 7

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var jobsQueueName = 'export-jobs'
var runsTableName = 'exportruns'
var useExistingExportStorage = !empty(exportStorageAccountName)
var createdExportContainerName = empty(exportContainerName) ? 'customer-insights' : exportContainerName
var connectionNames = empty(snapchatConnections) ? [] : split(replace(snapchatConnections, ' ', ''), ',')
var refreshTokenSecretNames = [for connection in connectionNames: 'snapchat-${connection}-refresh-token']
var exportAccountName = useExistingExportStorage ? exportStorageAccountName : exportStorage.outputs.name
var exportResourceGroupName = (useExistingExportStorage && !empty(exportStorageResourceGroup)) ? exportStorageResourceGroup : rg.name
var deadLetterContainerName = 'eventgrid-deadletter'
var operatorIps = empty(operatorIpAddresses) ? [] : split(replace(operatorIpAddresses, ' ', ''), ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

// The platform publishes and loads the code package as this identity, so the identity the
// app's code runs as needs no right on the package (app/rbac.bicep).
module packageIdentity 'app/identity.bicep' = {
  name: 'packageIdentity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}package-${resourceToken}'
    location: location
    tags: tags
  }
}

module network 'app/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    vnetName: '${abbrs.networkVirtualNetworks}${resourceToken}'
    nsgName: '${abbrs.networkNetworkSecurityGroups}app-${resourceToken}'
    natGateway: natGateway
    natGatewayName: 'ng-${resourceToken}'
    publicIpName: 'pip-ng-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    namePrefix: 'exports-${resourceToken}'
    alertEmails: empty(alertEmails) ? [] : split(replace(alertEmails, ' ', ''), ',')
    alertWebhookUrl: alertWebhookUrl
    staleAfterHours: staleAfterHours
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    appSubnetId: network.outputs.appSubnetId
    privateNetworking: privateNetworking
    deleteLock: resourceLocks
    workspaceId: monitoring.outputs.workspaceId
    spillContainerName: spillContainerName
    deadLetterContainerName: deadLetterContainerName
    jobsQueueName: jobsQueueName
    runsTableName: runsTableName
  }
}

// The deployment package lives in its own account: the publishing service writes it from outside
// the app's virtual network (see app/container-account.bicep).
module deploymentStorage 'app/container-account.bicep' = {
  name: 'deploymentStorage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}pkg${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    containerName: deploymentContainerName
    privateNetworking: privateNetworking
    deleteLock: resourceLocks
    workspaceId: monitoring.outputs.workspaceId
  }
}

module exportStorage 'app/container-account.bicep' = if (!useExistingExportStorage) {
  name: 'exportStorage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}exp${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    containerName: createdExportContainerName
    privateNetworking: privateNetworking
    deleteLock: resourceLocks
    workspaceId: monitoring.outputs.workspaceId
    deleteAfterDays: exportRetentionDays
    softDelete: false // Customer Insights' exports fail on an account with blob soft delete on
  }
}

module exportAccess 'app/export-access.bicep' = if (useExistingExportStorage) {
  name: 'exportAccess'
  scope: resourceGroup(empty(exportStorageResourceGroup) ? rg.name : exportStorageResourceGroup)
  params: {
    storageAccountName: exportStorageAccountName
    containerName: exportContainerName
    principalId: identity.outputs.principalId
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    appSubnetId: network.outputs.appSubnetId
    operatorIpAddresses: operatorIps
    privateNetworking: privateNetworking
    deleteLock: resourceLocks
    workspaceId: monitoring.outputs.workspaceId
  }
}

// Each account's and the vault's private endpoints (privateNetworking).
var storageEndpoints = [
  {
    key: 'runtime-blob'
    id: storage.outputs.id
    group: 'blob'
  }
  {
    key: 'runtime-queue'
    id: storage.outputs.id
    group: 'queue'
  }
  {
    key: 'runtime-table'
    id: storage.outputs.id
    group: 'table'
  }
  {
    key: 'package-blob'
    id: deploymentStorage.outputs.id
    group: 'blob'
  }
  {
    key: 'vault'
    id: keyVault.outputs.id
    group: 'vault'
  }
]
var exportEndpoints = useExistingExportStorage ? [] : [
  {
    key: 'export-blob'
    id: exportStorage.outputs.id
    group: 'blob'
  }
]

module privateLink 'app/private-link.bicep' = if (privateNetworking) {
  name: 'privateLink'
  scope: rg
  params: {
    location: location
    tags: tags
    vnetId: network.outputs.vnetId
    subnetId: network.outputs.privateEndpointSubnetId
    namePrefix: '${abbrs.networkPrivateEndpoints}${resourceToken}'
    endpoints: concat(storageEndpoints, exportEndpoints)
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deploymentStorageAccountName: deploymentStorage.outputs.name
    deploymentContainerName: deploymentStorage.outputs.containerName
    principalIdForPackage: packageIdentity.outputs.principalId
    exportStorageAccountName: useExistingExportStorage ? '' : exportStorage.outputs.name
    exportContainerName: createdExportContainerName
    refreshTokenSecretNames: refreshTokenSecretNames
  }
}

var spillContainerName = 'exporter-spill'

// The rest of the settings the app reads (shared/core/settings.py); api.bicep adds the
// AzureWebJobsStorage__* ones, which the host and the app share. AzureWebJobsStorage and
// EXPORT_STORAGE as connection strings are for local runs only and never set in Azure.
var appSettings = {
  EXPORT_STORAGE__blobServiceUri: useExistingExportStorage ? exportAccess.outputs.blobEndpoint : exportStorage.outputs.blobEndpoint
  EXPORTS_FILE: 'exports.json'
  JOBS_QUEUE: jobsQueueName
  RUNS_TABLE: runsTableName
  STATE_CONTAINER: 'exporter-state'
  SPILL_CONTAINER: spillContainerName
  SPILL_MEMORY_MB: '16'
  SPLIT_ABOVE_MB: '2048'
  STATE_RETENTION_DAYS: '30'
  EXPORT_SCHEDULE: exportSchedule
  KEY_VAULT_URL: keyVault.outputs.uri
  SNAPCHAT_API_URL: 'https://adsapi.snapchat.com/v1'
  SNAPCHAT_TOKEN_URL: 'https://accounts.snapchat.com/login/oauth2/access_token'
  SNAPCHAT_AUTHORIZE_URL: 'https://accounts.snapchat.com/login/oauth2/authorize'
  UPLOAD_BATCH_SIZE: '100000'
  HTTP_TIMEOUT_SECONDS: '60'
  RETRY_ATTEMPTS: '6'
  RETRY_MAX_SECONDS: '300'
  SNAPCHAT_REQUESTS_PER_SECOND: '10'
  RUN_LEASE_SECONDS: '60'
  SNAPSHOT_SETTLE_SECONDS: '120'
  SNAPSHOT_RECHECK_SECONDS: '30'
  TIMER_MAX_ATTEMPTS: '3'
  AUDIENCE_CHECK_MINUTES: '5,15,60'
  AUDIENCE_CHECK_LIMIT: '10'
  MATCH_DROP_PERCENT: '20'
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    packageIdentityId: packageIdentity.outputs.id
    appSubnetId: network.outputs.appSubnetId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentBlobEndpoint: deploymentStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentStorage.outputs.containerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
    authClientId: authClientId
  }
  // The host needs its storage roles before it starts.
  dependsOn: [
    rbac
  ]
}

// Events: the export account's system topic, the right its identity has on the dead-letter
// container of the runtime account, and (once the code is deployed) its subscription to the app.
module eventsTopic 'app/export-events.bicep' = if (exportEvents) {
  name: 'eventsTopic'
  scope: resourceGroup(exportResourceGroupName)
  params: {
    storageAccountName: exportAccountName
    topicName: 'evgt-exp-${resourceToken}'
    tags: tags
  }
}

module deadLetterAccess 'app/deadletter-access.bicep' = if (exportEvents) {
  name: 'deadLetterAccess'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    containerName: deadLetterContainerName
    principalId: eventsTopic.outputs.principalId
  }
}

module blobCreatedSubscription 'app/event-subscription.bicep' = if (exportEvents && exportEventSubscription) {
  name: 'blobCreatedSubscription'
  scope: resourceGroup(exportResourceGroupName)
  params: {
    topicName: eventsTopic.outputs.name
    functionAppName: api.outputs.name
    functionAppResourceGroup: rg.name
    exportContainerName: useExistingExportStorage ? exportContainerName : createdExportContainerName
    deadLetterAccountId: storage.outputs.id
    deadLetterContainerName: deadLetterContainerName
  }
  // Dead-lettering works from the first undeliverable event.
  dependsOn: [
    deadLetterAccess
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output AZURE_APP_SUBNET_ID string = network.outputs.appSubnetId
output AZURE_OUTBOUND_IP_ADDRESS string = network.outputs.outboundIpAddress
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
// Named apart from the EXPORT_* inputs in main.parameters.json: azd stores outputs in the same
// environment, and an output named like an input would feed back into the next deployment.
output AZURE_EXPORT_BLOB_ENDPOINT string = appSettings.EXPORT_STORAGE__blobServiceUri
output AZURE_EXPORT_CONTAINER string = useExistingExportStorage ? exportContainerName : createdExportContainerName
output AZURE_EXPORT_STORAGE_ACCOUNT string = exportAccountName
output AZURE_EXPORT_EVENTS_TOPIC string = exportEvents ? eventsTopic.outputs.name : ''
output AZURE_EVENTS_DEAD_LETTER_CONTAINER string = deadLetterContainerName
