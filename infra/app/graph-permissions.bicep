// Microsoft Graph application permissions (app role assignments) of the app's managed identity,
// through the Microsoft Graph Bicep extension (alias in ../bicepconfig.json; public cloud only). azd's
// postprovision hook (scripts/azd_hooks.py) deploys this file after main.bicep, retrying while the new
// identity replicates in the directory. Deploying it needs a deployer allowed to grant app roles:
// AppRoleAssignment.ReadWrite.All and Application.Read.All, which the Privileged Role Administrator (or
// Global Administrator) role carries. A deployer without them sets GRANT_GRAPH_PERMISSIONS=false and hands
// the commands in docs/deploy.md to an administrator.
extension microsoftGraphV1

@description('Object (principal) id of the managed identity\'s service principal.')
param identityPrincipalId string

param grantGroupMemberReadWrite bool = false
param grantUserReadWrite bool = false
param grantMailSend bool = false

// Microsoft Graph's application id (the same in every tenant).
var graphAppId = '00000003-0000-0000-c000-000000000000'
// Microsoft Graph application permission (app role) ids (the same in every tenant).
var userInviteAllRoleId = '09850681-111b-4a89-9bed-3f2cae46d706' // User.Invite.All: invite guests (always)
var userReadAllRoleId = 'df021288-bdef-4463-88db-98f22de89214' // User.Read.All: read the directory for an address before inviting (always)
var domainReadAllRoleId = 'dbb9058a-0e50-45d7-ae91-66909b5d4664' // Domain.Read.All: the tenant's verified domains, never invited (always)
var userReadWriteAllRoleId = '741f803b-c850-494e-b5df-cde7c675a1ca' // User.ReadWrite.All: convert internal users, reset redemption
var groupMemberReadWriteAllRoleId = 'dbaae8cf-10b5-4b86-a4a1-f871c94c6695' // GroupMember.ReadWrite.All: add guests to groups
var mailSendRoleId = 'b633e1c5-b582-4048-a93e-9f11b44c7e96' // Mail.Send: the portal's own mail (limit it to one mailbox)

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource userInviteAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: userInviteAllRoleId
}

resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: userReadAllRoleId
}

resource domainReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: domainReadAllRoleId
}

resource userReadWriteAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantUserReadWrite) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: userReadWriteAllRoleId
}

resource groupMemberReadWriteAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantGroupMemberReadWrite) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: groupMemberReadWriteAllRoleId
}

resource mailSend 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantMailSend) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: mailSendRoleId
}

output grantedAppRoleIds array = concat(
  [userInviteAllRoleId, userReadAllRoleId, domainReadAllRoleId],
  grantUserReadWrite ? [userReadWriteAllRoleId] : [],
  grantGroupMemberReadWrite ? [groupMemberReadWriteAllRoleId] : [],
  grantMailSend ? [mailSendRoleId] : []
)
