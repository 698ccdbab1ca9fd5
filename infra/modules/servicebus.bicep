// Service Bus (Standard: duplicate detection and scheduled messages) with the queues function_app binds to.
// Local (SAS key) auth is off: the app and the Functions host connect with the managed identity
// (SERVICEBUS_CONNECTION__fullyQualifiedNamespace / __credential / __clientId).
// tests/unit/test_infra_consistency.py checks these queues against the app's bindings and host.json.
param name string
param location string
param tags object
@description('The app\'s identity: receives (triggers, dead-lettering) and sends (webhook, delta, poller, reschedules).')
param principalId string

var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'

// lockDuration stays below host.json's maxAutoLockRenewalDuration (the host renews the lock while a function
// runs); maxDeliveryCount bounds retries before a message is dead-lettered; TTL outlives every reschedule
// (NO_SEAT_RETRY_MINUTES <= 1 day) and expired messages go to the dead-letter queue, never silently away;
// the duplicate-detection window covers a retried webhook or an overlapping poll re-sending the same id.
var queues = [
  {
    name: 'guest-changes'
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    defaultMessageTimeToLive: 'P14D'
    duplicateDetectionHistoryTimeWindow: 'PT1H'
  }
  {
    name: 'risk-incidents'
    lockDuration: 'PT2M'
    maxDeliveryCount: 8
    defaultMessageTimeToLive: 'P14D'
    duplicateDetectionHistoryTimeWindow: 'P1D'
  }
]

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [
  for q in queues: {
    parent: namespace
    name: q.name
    properties: {
      lockDuration: q.lockDuration
      maxDeliveryCount: q.maxDeliveryCount
      defaultMessageTimeToLive: q.defaultMessageTimeToLive
      deadLetteringOnMessageExpiration: true
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: q.duplicateDetectionHistoryTimeWindow
      requiresSession: false
      enablePartitioning: false
    }
  }
]

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataReceiver)
  scope: namespace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, serviceBusDataSender)
  scope: namespace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
  }
}

output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
