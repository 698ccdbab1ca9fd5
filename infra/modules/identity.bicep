// The one identity the function app runs as: Graph, Service Bus, Table/Blob Storage, Key Vault, App Insights.
// Roles are granted where each resource is declared (least privilege, scoped to that resource); Graph
// application permissions are not Azure RBAC and are granted after provisioning (docs/deploy.md).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
