// The app's two secrets in its Key Vault. Every value arrives in a @secure() parameter, so it appears in
// no deployment's inputs or outputs (tests/test_infra.py checks that no secret flows anywhere else).

@description('Name of the Key Vault (RBAC mode) the template created.')
param keyVaultName string

param formTokenSecretName string

@description('FORM_TOKEN_SECRET: signs the pages\' form tokens.')
@secure()
param formTokenSecret string

param captchaSecretName string

@description('CAPTCHA_SECRET. Empty: the vault\'s secret is left as it is (or absent while no CAPTCHA is used).')
@secure()
param captchaSecret string = ''

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource formToken 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  // checkov:skip=CKV_AZURE_41:no expiry: the app reads the current version through a versionless Key Vault reference, and an expiry would stop every form post on a date nobody watches; rotate by setting a new version
  parent: vault
  name: formTokenSecretName
  properties: {
    value: formTokenSecret
    contentType: 'text/plain'
  }
}

resource captcha 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(captchaSecret)) {
  // checkov:skip=CKV_AZURE_41:no expiry: the provider's secret lives as long as the provider's site key; an expiry would fail every CAPTCHA check (closed) on a date nobody watches
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a resource with an if condition
  parent: vault
  name: captchaSecretName
  properties: {
    value: captchaSecret
    contentType: 'text/plain'
  }
}
