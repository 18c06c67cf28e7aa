// The export account's BlobCreated events, delivered to the app's Event Grid-triggered function
// (blob_created in function_app.py), which queues at most one check per export and snapshot.
// Deployed into the export account's resource group, next to its system topic
// (export-events.bicep), once the app's code is deployed: Event Grid validates a webhook when the
// subscription is created, and the host creates the eventgrid_extension key only once it runs
// the function (docs/deploy.md, "Events: the app starts a run within a minute").
//
// Flex Consumption delivers Event Grid events through the host's webhook,
// https://<app>/runtime/webhooks/eventgrid?functionName=<function>&code=<key>, authorised by the
// host's eventgrid_extension system key. That key is read here and only here, straight into the
// endpoint URL, which Event Grid keeps write-only (it shows endpointBaseUrl, without the query):
// it is never a parameter, an output or an app setting.
param topicName string
param functionAppName string
param functionAppResourceGroup string
@description('The function that receives the events (function_app.py).')
param functionName string = 'blob_created'
@description('Container Customer Insights exports into; empty: every container of the account.')
param exportContainerName string
@description('Resource ID of the app\'s runtime storage account, which holds the dead-letter container.')
param deadLetterAccountId string
param deadLetterContainerName string

@minValue(1)
@maxValue(30)
@description('Delivery attempts before an event is dead-lettered.')
param maxDeliveryAttempts int = 10

@minValue(1)
@maxValue(1440)
@description('Minutes Event Grid keeps retrying one event. Longer than the timer\'s period: by then the timer has found the snapshot anyway.')
param eventTimeToLiveInMinutes int = 120

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: topicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
  scope: resourceGroup(functionAppResourceGroup)
}

// Customer Insights writes `<folder>/<segment>/<snapshot>/*.csv` and `model.json`; the subject of
// a BlobCreated event is /blobServices/default/containers/<container>/blobs/<path>.
var subjectPrefix = empty(exportContainerName) ? '/blobServices/default/containers/' : '/blobServices/default/containers/${exportContainerName}/blobs/'

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'exporter-blob-created'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${functionName}&code=${listKeys('${functionApp.id}/host/default', '2023-12-01').systemKeys.eventgrid_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: subjectPrefix
      isSubjectCaseSensitive: false
      advancedFilters: [
        // The partitions and the manifest; values are ORed, filters ANDed.
        {
          operatorType: 'StringEndsWith'
          key: 'subject'
          values: [
            '.csv'
            'model.json'
          ]
        }
        // Only a blob committed in full: Microsoft's documented calls for that (a Data Lake
        // CreateFile announces an empty file; FlushWithClose its content).
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: [
            'PutBlob'
            'PutBlockList'
            'FlushWithClose'
            'CopyBlob'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Written by the topic's own identity (deadletter-access.bicep), never with an account key.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = blobCreated.name
