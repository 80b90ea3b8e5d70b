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
@description('The Graph permissions the policy\'s guest-lifecycle rules need, and only those (signup-admin lifecycle --permissions prints them; shared.policy.lifecycle_rules.required_permissions).')
param lifecyclePermissions array = []

// Microsoft Graph's application id (the same in every tenant).
var graphAppId = '00000003-0000-0000-c000-000000000000'
// Microsoft Graph application permission (app role) ids (the same in every tenant).
var userInviteAllRoleId = '09850681-111b-4a89-9bed-3f2cae46d706' // User.Invite.All: invite guests (always)
var userReadAllRoleId = 'df021288-bdef-4463-88db-98f22de89214' // User.Read.All: read the directory for an address before inviting (always)
var domainReadAllRoleId = 'dbb9058a-0e50-45d7-ae91-66909b5d4664' // Domain.Read.All: the tenant's verified domains, never invited (always)
var userReadWriteAllRoleId = '741f803b-c850-494e-b5df-cde7c675a1ca' // User.ReadWrite.All: convert internal users, reset redemption
var groupMemberReadWriteAllRoleId = 'dbaae8cf-10b5-4b86-a4a1-f871c94c6695' // GroupMember.ReadWrite.All: add guests to groups
var mailSendRoleId = 'b633e1c5-b582-4048-a93e-9f11b44c7e96' // Mail.Send: the portal's own mail (limit it to one mailbox)
var auditLogReadAllRoleId = 'b0afded3-3588-46d8-8b3d-9842eff778da' // AuditLog.Read.All: signInActivity for inactiveDays (lifecycle rules)
var directoryReadAllRoleId = '7ab1d382-f21e-4acd-a863-ba3e13f7da61' // Directory.Read.All: a guest's memberships for removeGroups (lifecycle rules)
// The guest lifecycle's rules add these when they need them (blocking and deleting need User.ReadWrite.All,
// removeGroups GroupMember.ReadWrite.All and Directory.Read.All, inactiveDays AuditLog.Read.All).
var lifecycleUserReadWrite = contains(lifecyclePermissions, 'User.ReadWrite.All')
var lifecycleGroupMembers = contains(lifecyclePermissions, 'GroupMember.ReadWrite.All')

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

resource userReadWriteAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantUserReadWrite || lifecycleUserReadWrite) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: userReadWriteAllRoleId
}

resource groupMemberReadWriteAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantGroupMemberReadWrite || lifecycleGroupMembers) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: groupMemberReadWriteAllRoleId
}

resource mailSend 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantMailSend) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: mailSendRoleId
}

resource auditLogReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(lifecyclePermissions, 'AuditLog.Read.All')) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: auditLogReadAllRoleId
}

resource directoryReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (contains(lifecyclePermissions, 'Directory.Read.All')) {
  principalId: identityPrincipalId
  resourceId: graph.id
  appRoleId: directoryReadAllRoleId
}

output grantedAppRoleIds array = concat(
  [userInviteAllRoleId, userReadAllRoleId, domainReadAllRoleId],
  grantUserReadWrite || lifecycleUserReadWrite ? [userReadWriteAllRoleId] : [],
  grantGroupMemberReadWrite || lifecycleGroupMembers ? [groupMemberReadWriteAllRoleId] : [],
  grantMailSend ? [mailSendRoleId] : [],
  contains(lifecyclePermissions, 'AuditLog.Read.All') ? [auditLogReadAllRoleId] : [],
  contains(lifecyclePermissions, 'Directory.Read.All') ? [directoryReadAllRoleId] : []
)
