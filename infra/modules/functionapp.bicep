// The function app on the Flex Consumption plan (Linux, Python 3.11), running as the user-assigned identity.
//
// Always ready: one instance of the `http` group stays warm. Graph's validation handshake must be answered
// within 10 s and a notification within 3 s, or Graph fails the subscription request / drops and finally
// throttles the endpoint; a cold start of a Python app with msgraph-sdk can take longer than that. The
// price is one instance billed around the clock at the always-ready rate (docs/deploy.md, "Cost and cold
// starts"); set alwaysReadyHttpInstances to 0 to trade the guarantee for cost (the delta backstop then
// picks up what Graph gave up on, within DELTA_SCHEDULE).
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param reportContainerName string
param serviceBusNamespace string
param appInsightsConnectionString string
param keyVaultName string
@secure()
param webhookFunctionKey string
@description('Client id of the dashboard\'s Entra app registration (tools/dashboard_app.py creates it). Empty = no App Service Authentication: the dashboard then answers 503.')
param dashboardClientId string = ''
param sinkSecretSettings array
param licenseMode string
param licenseSku string
param licenseGroupId string
param defaultUsageLocation string
param mailSender string
param adminAlertRecipients string
param riskOrganisationName string
param riskSupportContact string
@minValue(0)
param alwaysReadyHttpInstances int = 1
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var blobEndpoint = 'https://${storageAccountName}.blob.${environment().suffixes.storage}'
var tableEndpoint = 'https://${storageAccountName}.table.${environment().suffixes.storage}'
var notificationPath = '/api/graph/notifications'

// App Service Authentication signs operators in for the dashboard only. Every other HTTP route is reached without
// sign-in: Graph's webhook (its function key is the check) and the sponsors' attestation links (signed links for
// people outside the tenant). tests/unit/test_infra_consistency.py checks this list against the routes the
// functions register, so a new route cannot be left behind the sign-in by accident, nor the dashboard left out.
var anonymousPaths = [
  notificationPath
  '/api/attest'
]

// Key Vault references resolve with the user-assigned identity (keyVaultReferenceIdentity below). One
// `name:`/`value:` pair per object, over two lines: azure-functions-doctor reads app settings in that shape.
var baseSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'GRAPH_AUTH'
    value: 'managed-identity'
  }
  {
    name: 'SERVICEBUS_CONNECTION__fullyQualifiedNamespace'
    value: serviceBusNamespace
  }
  {
    name: 'SERVICEBUS_CONNECTION__credential'
    value: 'managedidentity'
  }
  {
    name: 'SERVICEBUS_CONNECTION__clientId'
    value: identityClientId
  }
  {
    name: 'STATE_BACKEND'
    value: 'table'
  }
  {
    name: 'STATE_TABLE_ENDPOINT'
    value: tableEndpoint
  }
  {
    name: 'REPORT_STORE'
    value: 'blob'
  }
  {
    name: 'REPORT_BLOB_ACCOUNT_URL'
    value: blobEndpoint
  }
  {
    name: 'REPORT_BLOB_CONTAINER'
    value: reportContainerName
  }
  {
    name: 'GRAPH_CLIENT_STATE'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=graph-client-state)'
  }
  {
    name: 'GRAPH_NOTIFICATION_URL'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=graph-notification-url)'
  }
  {
    name: 'STALE_ATTEST_SIGNING_KEY'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=stale-attest-signing-key)'
  }
  {
    name: 'DASHBOARD_SIGNING_KEY'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=dashboard-signing-key)'
  }
  {
    // the Origin a dashboard POST must carry; set your custom domain instead if operators use one
    name: 'DASHBOARD_BASE_URL'
    value: 'https://${name}.azurewebsites.net'
  }
  {
    // App Service Authentication's client assertion: this identity, through the federated credential
    // tools/dashboard_app.py adds to the dashboard's app registration, instead of a client secret
    // (https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad#use-a-managed-identity-instead-of-a-secret-preview)
    name: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
    value: identityClientId
  }
  {
    // the sponsors' links point here; set your custom domain instead if the app has one (docs/deploy.md)
    name: 'STALE_ATTEST_BASE_URL'
    value: 'https://${name}.azurewebsites.net'
  }
  {
    name: 'SUBSCRIPTION_SCHEDULE'
    value: '0 0 */6 * * *'
  }
  {
    name: 'DELTA_SCHEDULE'
    value: '0 */15 * * * *'
  }
  {
    name: 'RISK_POLL_SCHEDULE'
    value: '0 */5 * * * *'
  }
  {
    name: 'RISK_DIGEST_SCHEDULE'
    value: '0 0 7 * * *'
  }
  {
    name: 'STALE_SWEEP_SCHEDULE'
    value: '0 0 2 * * *'
  }
  {
    name: 'STALE_RESUME_SCHEDULE'
    value: '0 */5 * * * *'
  }
  {
    name: 'POSTURE_SCHEDULE'
    value: '0 30 1 * * *'
  }
  {
    name: 'DEADLETTER_CHECK_SCHEDULE'
    value: '0 */15 * * * *'
  }
  {
    name: 'STALE_DRY_RUN'
    value: 'true'
  }
  {
    // where a re-sent invitation lands the guest: this tenant's My Apps (STALE_REINVITE_PENDING re-sends them)
    name: 'STALE_REINVITE_REDIRECT_URL'
    value: 'https://myapps.microsoft.com/?tenantid=${tenant().tenantId}'
  }
  {
    name: 'LICENSE_MODE'
    value: licenseMode
  }
  {
    name: 'LICENSE_SKU'
    value: licenseSku
  }
  {
    name: 'LICENSE_GROUP_ID'
    value: licenseGroupId
  }
  {
    name: 'DEFAULT_USAGE_LOCATION'
    value: defaultUsageLocation
  }
  {
    // the welcome mail's tenant-specific My Apps link (LICENSE_WELCOME_MAIL turns the mail on)
    name: 'LICENSE_WELCOME_TENANT_ID'
    value: tenant().tenantId
  }
  {
    name: 'MAIL_SENDER'
    value: mailSender
  }
  {
    name: 'ADMIN_ALERT_RECIPIENTS'
    value: adminAlertRecipients
  }
  {
    name: 'RISK_ORGANISATION_NAME'
    value: riskOrganisationName
  }
  {
    name: 'RISK_SUPPORT_CONTACT'
    value: riskSupportContact
  }
]

// Each partner sink secret setting -> the Key Vault secret of the same name, lower case with dashes.
var sinkSettings = map(sinkSecretSettings, setting => {
  name: setting
  value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${toLower(replace(setting, '_', '-'))})'
})

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: concat(baseSettings, sinkSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: [
          { name: 'http', instanceCount: alwaysReadyHttpInstances }
        ]
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// App Service Authentication (Easy Auth v2) with the Entra provider, for the operator dashboard (docs/dashboard.md).
// RedirectToLoginPage sends a browser without a session to Entra sign-in; excludedPaths lets the other routes
// through unauthenticated (https://learn.microsoft.com/azure/app-service/configure-authentication-file-based,
// globalValidation). The app then checks the app roles in X-MS-CLIENT-PRINCIPAL (GuestWarden.Reader / .Operator);
// the platform sets WEBSITE_AUTH_ENABLED itself. No client secret: see OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(dashboardClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: anonymousPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: dashboardClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
        }
        validation: {
          allowedAudiences: [
            dashboardClientId
          ]
        }
      }
    }
    login: {
      // the app reads the principal header only; it never asks the platform for the operator's tokens
      tokenStore: {
        enabled: false
      }
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The notification URL carries the function key, so it is a secret; the postdeploy hook installs the same
// key on the function app (`az functionapp keys set ... --key-name graph-webhook`).
resource notificationUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'graph-notification-url'
  properties: {
    value: 'https://${site.properties.defaultHostName}${notificationPath}?code=${webhookFunctionKey}'
  }
}

output name string = site.name
output hostName string = site.properties.defaultHostName
output dashboardUrl string = 'https://${site.properties.defaultHostName}/api/dashboard/'
output webhookUrl string = 'https://${site.properties.defaultHostName}${notificationPath}'
