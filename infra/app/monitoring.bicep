// Log Analytics workspace + workspace-based Application Insights. Local (key) authentication is
// off on both, so telemetry is accepted only from callers with an Entra ID token: the app's
// identity gets Monitoring Metrics Publisher on the component in rbac.bicep.
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@description('Days the workspace keeps logs: the vault\'s audit events and the storage logs too.')
@minValue(90)
@maxValue(730)
param retentionInDays int = 90

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output applicationInsightsName string = appInsights.name
output applicationInsightsId string = appInsights.id
// The connection string identifies the component; with DisableLocalAuth it grants nothing by itself.
output connectionString string = appInsights.properties.ConnectionString
