// Key Vault (RBAC) for the secrets the app reads through Key Vault references: the Graph clientState, the
// attestation links' signing key, the dashboard's anti-forgery key, the notification URL (it carries the function key; written by functionapp.bicep) and the partner ticket sinks'
// secrets (created by the operator: docs/deploy.md).
param name string
param location string
param tags object
@description('The app\'s identity: reads secrets (Key Vault references resolve with it).')
param principalId string
@description('The operator running azd: manages secrets (the sink secrets are a manual step). Empty = none.')
param operatorPrincipalId string = ''
@secure()
param graphClientState string
@secure()
param attestSigningKey string
@secure()
param dashboardSigningKey string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
  }
}

resource clientState 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'graph-client-state'
  properties: {
    value: graphClientState
  }
}

resource attestKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'stale-attest-signing-key'
  properties: {
    value: attestSigningKey
  }
}

resource dashboardKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'dashboard-signing-key'
  properties: {
    value: dashboardSigningKey
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource operatorSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: operatorPrincipalId
    principalType: 'User'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
output clientStateSecretName string = clientState.name
