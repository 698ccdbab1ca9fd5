// guestwarden on Azure: one resource group with everything the function app needs, identity-based throughout
// (no storage keys, no Service Bus keys, no instrumentation keys). `azd up` deploys it; docs/deploy.md walks it.
// tests/unit/test_infra_consistency.py keeps this in step with the code (queues, bindings, settings, roles).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
param location string

@description('`sku` (assign licenseSku directly) or `group` (add guests to licenseGroupId).')
@allowed(['sku', 'group'])
param licenseMode string = 'sku'

@description('skuPartNumber to assign in sku mode, e.g. GUEST_ACCESS. Empty in group mode.')
param licenseSku string = ''

@description('Object id of the licensing group in group mode. Empty in sku mode.')
param licenseGroupId string = ''

@description('ISO 3166 alpha-2 usage location for guests without one (sku mode), e.g. US.')
param defaultUsageLocation string = ''

@minLength(3)
@description('UPN of the mailbox guestwarden sends from (restrict Mail.Send to it: docs/permissions.md).')
param mailSender string

@minLength(3)
@description('Comma-separated admin addresses for operational alerts and the risk digest.')
param adminAlertRecipients string

@description('Our organisation as guests know it (guest notice, ticket).')
param riskOrganisationName string = ''

@description('Whom a blocked guest may contact on our side (an address or a URL).')
param riskSupportContact string = ''

@secure()
@minLength(16)
@maxLength(128)
@description('The clientState shared with Graph (16-128 characters). azure.yaml\'s preprovision hook generates one.')
param graphClientState string

@secure()
@minLength(32)
@description('The HMAC key that signs the sponsors\' attestation links (STALE_ATTEST_SIGNING_KEY, stored in Key Vault). azure.yaml\'s preprovision hook generates one; rotation: docs/stale-guests.md.')
param attestSigningKey string

@secure()
@minLength(32)
@description('The HMAC key of the operator dashboard\'s anti-forgery codes (DASHBOARD_SIGNING_KEY, stored in Key Vault). azure.yaml\'s preprovision hook generates one; rotation: docs/deploy.md, "The operator dashboard".')
param dashboardSigningKey string

@description('Client id of the dashboard\'s Entra app registration; azure.yaml\'s preprovision hook (tools/dashboard_app.py) creates it. Empty = no App Service Authentication (the dashboard answers 503).')
param dashboardClientId string = ''

@secure()
@minLength(32)
@description('The function key Graph puts in the notificationUrl. azure.yaml\'s preprovision hook generates one; the postdeploy hook installs it as the `graph-webhook` function key.')
param webhookFunctionKey string

@description('Comma-separated app setting names of the partner ticket sinks\' secrets (secretSetting, usernameSetting, passwordSetting in the partner directory). Each becomes a Key Vault reference to the secret of the same name in lower case with dashes; you create the secrets (docs/deploy.md).')
param sinkSecretSettings string = ''

@description('Object id of the operator running azd (azd sets it): may manage Key Vault secrets. Empty = none.')
param principalId string = ''

var tags = { 'azd-env-name': environmentName, app: 'guestwarden' }
var token = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-guestwarden-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-guestwarden-${token}'
    appInsightsName: 'appi-guestwarden-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stgw${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-guestwarden-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-gw-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    graphClientState: graphClientState
    attestSigningKey: attestSigningKey
    dashboardSigningKey: dashboardSigningKey
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-guestwarden-${token}'
    planName: 'plan-guestwarden-${token}'
    location: location
    tags: union(tags, { 'azd-service-name': 'guestwarden' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainer
    reportContainerName: storage.outputs.reportContainer
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    keyVaultName: keyVault.outputs.name
    webhookFunctionKey: webhookFunctionKey
    dashboardClientId: dashboardClientId
    sinkSecretSettings: filter(map(split(sinkSecretSettings, ','), name => trim(name)), name => !empty(name))
    licenseMode: licenseMode
    licenseSku: licenseSku
    licenseGroupId: licenseGroupId
    defaultUsageLocation: defaultUsageLocation
    mailSender: mailSender
    adminAlertRecipients: adminAlertRecipients
    riskOrganisationName: riskOrganisationName
    riskSupportContact: riskSupportContact
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST_NAME string = functionApp.outputs.hostName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
@description('The webhook Graph calls, without its function key (the full URL, key included, is the Key Vault secret graph-notification-url).')
output WEBHOOK_URL string = functionApp.outputs.webhookUrl
@description('The operator dashboard (sign-in with an app role of the dashboard\'s app registration).')
output DASHBOARD_URL string = functionApp.outputs.dashboardUrl
