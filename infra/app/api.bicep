// The Flex Consumption plan and the function app (Python 3.11). Every setting the app reads comes
// from the appSettings object passed in by main.bicep; the platform settings below point the host
// at its storage and Application Insights through the user-assigned identity. None of them holds
// a key, a connection string with a key, or a secret.
param name string
param planName string
param location string
param tags object = {}
param serviceName string = 'api'
param identityId string
param identityClientId string
@description('The identity the platform publishes and loads the code package with.')
param packageIdentityId string
param appSubnetId string
param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
@description('Blob endpoint of the account holding the deployment package container.')
param deploymentBlobEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string

@description('Settings read by the app itself (shared/core/settings.py), name to value.')
param appSettings object

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Client ID of the Entra ID app registration callers sign in to (docs/deploy.md, "Sign-in and roles"). Empty: sign-in is on, but nobody can sign in until it is set.')
param authClientId string = ''

@description('Tenant of that app registration.')
param authTenantId string = tenant().tenantId

// Identity-based storage settings (read by the host, and the queue/table/clientId ones by the app
// too) and Application Insights (read by the platform only).
var platformSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The Python worker sends the app's OpenTelemetry data itself (Microsoft's documented setup,
  // no duplicate host-level entries), without the generic HTTP instrumentations: the app
  // records Snapchat requests by route template, never their full URLs.
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: 'requests,urllib,urllib3,httpx'
}

var allSettings = union(platformSettings, appSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption offers zone redundancy only in some regions, so turning it on would make the template fail elsewhere; a zone outage only delays exports (jobs wait in the queue and the timer catches up).
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: Client certificates would break the documented callers (browsers and scripts signing in with Entra ID); TLS 1.2 and the platform's Entra ID sign-in protect the API.
  // checkov:skip=CKV_AZURE_222: The HTTP API is how operators start and inspect runs from outside Azure; it stays public, HTTPS only, behind the platform's Entra ID sign-in and the app's roles.
  // checkov:skip=CKV_AZURE_212: A batch exporter driven by a timer and a queue does not need warm instances; Flex Consumption scales from zero, and always-ready instances would be billed around the clock.
  // checkov:skip=CKV_AZURE_213: No HTTP health probe: the work runs in timer and queue triggers, instances scale to zero, and failures surface in Application Insights and the runs table.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${packageIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: appSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      cors: {
        allowedOrigins: []
      }
      appSettings: [for item in items(allSettings): {
        name: item.key
        value: item.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${deploymentBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: packageIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The platform's sign-in (App Service Authentication) in front of every HTTP route: a request
// without a session or a valid Entra ID token for the app registration is sent to the sign-in
// page (so the console signs people in; scripts send a token), and the app reads the
// caller and their app roles from X-MS-CLIENT-PRINCIPAL. The app refuses every call while
// this is off (WEBSITE_AUTH_ENABLED unset), so a misconfiguration never opens the API.
resource signIn 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: it is the App Service Authentication this check asks for; checkov looks for the older siteAuthSettings shape on the site.
  // checkov:skip=CKV_AZURE_63: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: HTTP logging is a web-config property, not one of authsettingsV2.
  // checkov:skip=CKV_AZURE_65: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: detailed error messages are a web-config property, not one of authsettingsV2.
  // checkov:skip=CKV_AZURE_66: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: failed request tracing is a web-config property, not one of authsettingsV2.
  // checkov:skip=CKV_AZURE_80: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: the .NET version is a web-config property (and the app runs Python 3.11).
  // checkov:skip=CKV_AZURE_88: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: Azure Files mounts are a site property, not one of authsettingsV2 (the app mounts none).
  // checkov:skip=CKV_AZURE_222: This resource is the sign-in configuration (authsettingsV2), not the site's web configuration: public network access is a site property, not one of authsettingsV2 (the site's suppression gives the reason).
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // A browser without a session is sent to sign in (the console); scripts send a token.
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      // Event Grid cannot sign in: it delivers to the host's Event Grid webhook, which the host
      // itself guards with its eventgrid_extension system key (a request without it is refused).
      // Only that path; every route of the app stays behind sign-in.
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: !empty(authClientId)
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// No FTP and no basic-auth (publishing profile) deployments: azd, Core Tools and the Azure CLI
// deploy with the caller's Entra ID token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
