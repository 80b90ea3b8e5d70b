// Alert rules and a workbook over the app's OpenTelemetry data in Application Insights (docs/operations.md).
// Each query names only metrics and log keys the code emits (tests/test_infra.py checks that).

@description('Where the resources go.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Resource id of the Application Insights component the app reports to.')
param appInsightsId string

@description('Mail address the alerts go to; empty: the rules still fire in the portal, nobody is mailed.')
param alertEmail string = ''

@description('Failed invitations within 15 minutes that raise an alert.')
param failedThreshold int = 10

@description('Hours without a successful invitation, while sign-ups arrive, that raise an alert.')
param noInvitationHours int = 6

var actions = empty(alertEmail) ? [] : [actionGroup.id]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-signup-portal'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'signups'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var rules = [
  {
    name: 'failed-invitations'
    display: 'Sign-ups: failed invitations above ${failedThreshold} in 15 minutes, or one permanent code repeating'
    severity: 1
    window: 'PT15M'
    // A broken permission (User.Invite.All removed, Conditional Access blocking the identity) looks like
    // a run of one permanent code: five of the same code count too.
    query: 'customMetrics | where name == "signup.final" | extend status = tostring(customDimensions["status"]), code = tostring(customDimensions["code"]) | where status == "failed" | summarize failed = sum(valueCount) by code | summarize total = sum(failed), worst = max(failed) | where total > ${failedThreshold} or worst >= 5'
  }
  {
    name: 'poison-message'
    display: 'Sign-ups: a message reached the poison queue'
    severity: 1
    window: 'PT15M'
    query: 'traces | where message startswith "worker.poison"'
  }
  {
    name: 'budget-saturated'
    display: 'Sign-ups: Graph throttled the app (429) throughout the last 15 minutes'
    severity: 2
    window: 'PT15M'
    query: 'customMetrics | where name == "graph.answers" and tostring(customDimensions["graph.class"]) == "429" | summarize throttled = sum(valueCount) by bin(timestamp, 5m) | summarize bins = count() | where bins >= 3'
  }
  {
    name: 'overdue-items'
    display: 'Sign-ups: due items older than 30 minutes (the sweeper nudged one three times)'
    severity: 2
    window: 'PT30M'
    query: 'traces | where message startswith "sweeper.requeued" | extend nudges = toint(extract("nudges=([0-9]+)", 1, message)) | where nudges >= 3'
  }
  {
    name: 'no-invitations'
    display: 'Sign-ups: none invited for ${noInvitationHours} h while sign-ups arrive'
    severity: 1
    window: 'PT${noInvitationHours}H'
    query: 'customMetrics | where name in ("signup.decisions", "signup.final") | summarize arrived = sumif(valueCount, name == "signup.decisions" and tostring(customDimensions["action"]) == "approve"), invited = sumif(valueCount, name == "signup.final" and tostring(customDimensions["status"]) == "invited") | where arrived > 0 and invited == 0'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = [
  for rule in rules: {
    name: 'alert-signups-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: rule.display
      severity: rule.severity
      enabled: true
      evaluationFrequency: 'PT5M'
      windowSize: rule.window
      scopes: [appInsightsId]
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: actions
      }
    }
  }
]

var workbookTiles = [
  {
    title: 'Sign-ups by decision and final status'
    query: 'customMetrics | where name in ("signup.decisions", "signup.final") | extend what = iff(name == "signup.decisions", strcat("decided ", tostring(customDimensions["action"])), tostring(customDimensions["status"])) | summarize n = sum(valueCount) by what, bin(timestamp, 1d) | render columnchart'
  }
  {
    title: 'Time from intake to invited (seconds)'
    query: 'customMetrics | where name == "signup.time_to_invite" | summarize p50 = percentile(value, 50), p95 = percentile(value, 95) by bin(timestamp, 1h) | render timechart'
  }
  {
    title: 'Graph answers by class'
    query: 'customMetrics | where name == "graph.answers" | summarize n = sum(valueCount) by class = tostring(customDimensions["graph.class"]), bin(timestamp, 1h) | render timechart'
  }
  {
    title: 'Failures by code'
    query: 'customMetrics | where name == "signup.final" and tostring(customDimensions["status"]) != "invited" | summarize n = sum(valueCount) by code = tostring(customDimensions["code"]) | order by n desc'
  }
  {
    title: 'Mails sent and in doubt'
    query: 'customMetrics | where name in ("mail.sent", "mail.in_doubt") | summarize n = sum(valueCount) by name, step = tostring(customDimensions["step"]), bin(timestamp, 1d) | render columnchart'
  }
]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'signup-portal-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Sign-up portal'
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string({
      version: 'Notebook/1.0'
      items: [
        for tile in workbookTiles: {
          type: 3
          content: {
            version: 'KqlItem/1.0'
            title: tile.title
            query: tile.query
            queryType: 0
            resourceType: 'microsoft.insights/components'
          }
        }
      ]
    })
  }
}

output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
output workbookId string = workbook.id
