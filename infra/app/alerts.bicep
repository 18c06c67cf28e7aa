// Alerts and a run-health workbook on the app's own telemetry (shared/adapters/telemetry.py):
// the custom metrics land in Application Insights' customMetrics, with their dimensions in
// customDimensions. Each rule is a log search alert scoped to the component; docs/deploy.md
// says what to do when each fires.
param location string
param tags object = {}
param applicationInsightsId string
param namePrefix string

@description('E-mail addresses the action group notifies. Empty (and no webhook): no action group; the rules still fire in the portal.')
param alertEmails array = []

@secure()
@description('Optional webhook the action group calls with the common alert schema (a Logic App or a Teams Workflow that accepts it; a plain Slack or Teams incoming webhook does not).')
param alertWebhookUrl string = ''

@minValue(1)
@maxValue(168)
@description('Hours an enabled export may have a settled snapshot without a successful run before the stale-audience alert fires.')
param staleAfterHours int = 6

@minValue(30)
@maxValue(86400)
@description('Seconds from a snapshot being complete to its run\'s successful end (data landed → audience updated) above which the latency alert fires.')
param latencySeconds int = 600

var notify = !empty(alertEmails) || !empty(alertWebhookUrl)
var actions = notify ? { actionGroups: [ actionGroup.id ] } : { actionGroups: [] }
// Runs that ended, dry runs left out (a failed preview changes nothing and alerts nobody).
var runs = 'customMetrics | where name == "exporter.runs" | extend export = tostring(customDimensions.export), status = tostring(customDimensions.status), kind = tostring(customDimensions.error_kind), dryRun = tolower(tostring(customDimensions.dry_run)) | where dryRun != "true"'
// Warnings of the audience checks (shared.core.audience_health), by code: never a figure.
var warnings = 'customMetrics | where name == "exporter.audience.warnings" | extend export = tostring(customDimensions.export), code = tostring(customDimensions.code)'
var identifiers = 'customMetrics | where name in ("exporter.identifiers.uploaded", "exporter.identifiers.added", "exporter.identifiers.removed") | where tolower(tostring(customDimensions.dry_run)) != "true"'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (notify) {
  name: '${namePrefix}-exports'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'exports'
    enabled: true
    emailReceivers: [for (address, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// name, severity, description, query (a row per export that should alert; or, with
// operator LessThan, rows that should be there), how often it runs and over what window
var rules = [
  {
    name: 'run-failed'
    severity: 1
    description: 'An export run failed, including a job that reached the poison queue (error_kind gave_up). Open the run in the console: its error and advice say what to do (docs/reliability.md, When a run fails).'
    query: '${runs} | where status == "failed" | summarize failed = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'credentials-refused'
    severity: 1
    description: 'Snapchat refused a connection\'s credentials (revoked or expired refresh token, or a changed client secret). Press Connect Snapchat on the console\'s Connections page, or run python -m shared connect <name>.'
    query: '${runs} | where status == "failed" and kind == "credentials_refused" | summarize failed = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'removal-safeguard'
    severity: 2
    description: 'The removal safeguard stopped a mirror run before it sent anything. Check the export\'s columns and the snapshot; if the removal is intended, run once with allow_large_removal.'
    query: '${runs} | where status == "failed" and kind == "removal_blocked" | summarize stopped = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'audience-stale'
    severity: 2
    description: 'An enabled export has had a settled snapshot for more than ${staleAfterHours} hours without a successful run, so its audience is out of date. Look at the export\'s last runs in the console.'
    // The newest value per export: a success resolves the alert at the next tick.
    query: 'customMetrics | where name == "exporter.snapshot.waiting_hours" | extend export = tostring(customDimensions.export) | summarize arg_max(timestamp, valueMax) by export | where valueMax > ${staleAfterHours}'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT1H'
  }
  {
    name: 'timer-check-failed'
    severity: 2
    description: 'The timer could not look for new snapshots of an export (for example the app may not read the export container, or a definition names a missing secret), so no run starts and no staleness is measured. The app log says why: search traces for "Timer could not check export".'
    query: 'customMetrics | where name == "exporter.timer.check_failed" | extend export = tostring(customDimensions.export) | summarize failed = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'timer-silent'
    severity: 1
    description: 'The snapshot timer has not run for an hour: the app is stopped, failed to start, or its schedule is wrong. Check the function app in the portal (its state and log stream) and EXPORT_SCHEDULE.'
    // No row at all in the last hour: the alert counts rows and fires below one.
    query: 'customMetrics | where name == "exporter.timer.ticks"'
    operator: 'LessThan'
    threshold: 1
    perExport: false
    frequency: 'PT30M'
    window: 'PT1H'
  }
  {
    name: 'too-few-users'
    severity: 3
    description: 'Snapchat reports too few matched users to target an export\'s audience (about 1,000 are needed). The run\'s audience check in the console says how many more; add identifier kinds or segments, or widen the segment.'
    query: '${warnings} | where code == "too_few_users" | summarize warned = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'match-rate-dropped'
    severity: 2
    description: 'An export\'s estimated match rate fell by more than MATCH_DROP_PERCENT from the previous runs\' median. Compare the run\'s coverage by reason with the runs before: a changed column or format is the usual cause.'
    query: '${warnings} | where code == "match_rate_dropped" | summarize warned = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'audience-cap-near'
    severity: 2
    description: 'The ad account an export creates audiences in holds 90 % or more of Snapchat\'s 1,000 audiences. Delete audiences no longer used before new exports are refused.'
    query: '${warnings} | where code == "audience_cap_near" | summarize warned = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT30M'
  }
  {
    name: 'members-age-out'
    severity: 2
    description: 'An add-mode export has had no successful run for more than its audience\'s retention less 14 days: its members start leaving the audience. Look at the export\'s runs.'
    query: '${warnings} | where code == "members_age_out" | summarize warned = sum(valueSum) by export'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT1H'
    window: 'PT1H'
  }
  {
    name: 'latency-high'
    severity: 3
    description: 'A run ended more than ${latencySeconds} seconds after its snapshot was complete (data landed → audience updated). Look at the run\'s queued, started and finished times in the console: a late start points at the Event Grid subscription (the timer caught the snapshot), a long run at its size or Snapchat\'s pace.'
    query: 'customMetrics | where name == "exporter.run.latency" | extend export = tostring(customDimensions.export) | summarize longest = max(valueMax) by export | where longest > ${latencySeconds}'
    operator: 'GreaterThan'
    threshold: 0
    perExport: true
    frequency: 'PT15M'
    window: 'PT1H'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  properties: {
    displayName: 'Exports: ${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [ applicationInsightsId ]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: rule.operator
          threshold: rule.threshold
          dimensions: rule.perExport ? [
            {
              name: 'export'
              operator: 'Include'
              values: [ '*' ]
            }
          ] : []
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}]

// The run-health workbook: runs per export over time, identifiers uploaded / added / removed,
// failures by kind, durations and audience sizes.
var workbookQueries = [
  {
    title: 'Runs per export'
    query: '${runs} | summarize runs = sum(valueSum) by export, bin(timestamp, 1h) | render timechart'
  }
  {
    title: 'Identifiers uploaded, added and removed'
    query: '${identifiers} | summarize total = sum(valueSum) by name, bin(timestamp, 1h) | render columnchart'
  }
  {
    title: 'Failures by export and kind'
    query: '${runs} | where status == "failed" | summarize failures = sum(valueSum) by export, kind | order by failures desc'
  }
  {
    title: 'Run duration (seconds)'
    query: 'customMetrics | where name == "exporter.run.duration" | extend export = tostring(customDimensions.export) | summarize average = sum(valueSum) / sum(valueCount), longest = max(valueMax) by export, bin(timestamp, 1h) | render timechart'
  }
  {
    title: 'Audience size as Snapchat reports it'
    query: 'customMetrics | where name == "exporter.audience.size" | extend export = tostring(customDimensions.export) | summarize users = max(valueMax) by export, bin(timestamp, 1d) | render timechart'
  }
]

var workbookItems = [for (item, i) in workbookQueries: {
  type: 3
  name: 'query-${i}'
  content: {
    version: 'KqlItem/1.0'
    title: item.title
    query: item.query
    queryType: 0
    resourceType: 'microsoft.insights/components'
    timeContext: {
      durationMs: 604800000
    }
  }
}]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'run-health')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Customer Insights to Snapchat: run health'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string({
      version: 'Notebook/1.0'
      items: workbookItems
      fallbackResourceIds: [ applicationInsightsId ]
    })
  }
}

output actionGroupId string = notify ? actionGroup.id : ''
output workbookId string = workbook.id
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
