# An example for terraform-provider-monkeyci; see "Terraform" in README.md.
# Run with MONKEYCI_ENDPOINT and MONKEYCI_TOKEN set (an admin or user token: it creates an org),
# and a CLI config with dev_overrides. The state holds secrets in plain text: keep it private.

terraform {
  required_providers {
    monkeyci = { source = "monkeyci/monkeyci" }
  }
}

# endpoint, token and ca_file default to $MONKEYCI_ENDPOINT, $MONKEYCI_TOKEN and $MONKEYCI_CA_FILE.
# An https:// endpoint (the server behind a TLS-terminating proxy) must present a certificate
# that the system's roots or the PEM file ca_file trusts, e.g.:
#   endpoint = "https://ci.example.com"
#   ca_file  = "/etc/monkeyci/ca.pem"
provider "monkeyci" {}

variable "deploy_private_key" {
  description = "An ssh private key (no passphrase) that may read the repository, e.g. file(\"~/.ssh/monkeyci_deploy\")."
  type        = string
  sensitive   = true
}

variable "deploy_public_key" {
  type = string
}

resource "monkeyci_org" "platform" {
  name = "Acme Platform"
  slug = "acme-platform" # changing the slug replaces the org
}

resource "monkeyci_repo" "app" {
  org_id  = monkeyci_org.platform.id
  name    = "app"
  git_url = "ssh://git@git.example.com/acme/app.git"
  labels  = { env = "prod" }
}

# Configure the git host with url and secret (e.g. a github_repository_webhook).
resource "monkeyci_webhook" "push" {
  repo_id = monkeyci_repo.app.id
  host    = "github"
}

resource "monkeyci_schedule" "nightly" {
  repo_id = monkeyci_repo.app.id
  cron    = "0 3 * * *"
}

resource "monkeyci_param_set" "prod" {
  org_id     = monkeyci_org.platform.id
  name       = "prod"
  filter     = [{ env = "prod" }] # repos labelled env=prod
  parameters = { REGION = "eu-west-1" }
}

resource "monkeyci_ssh_key" "deploy" {
  org_id      = monkeyci_org.platform.id
  description = "deploy key"
  filter      = [{ env = "prod" }]
  private_key = var.deploy_private_key
  public_key  = var.deploy_public_key
}

resource "monkeyci_api_token" "ci" {
  org_id = monkeyci_org.platform.id
  name   = "ci"
  role   = "member"
}

data "monkeyci_repo" "app" {
  org_id = monkeyci_org.platform.id
  name   = monkeyci_repo.app.name
}

output "webhook_url" {
  value = monkeyci_webhook.push.url
}

output "webhook_secret" {
  value     = monkeyci_webhook.push.secret
  sensitive = true
}

output "ci_token" {
  value     = monkeyci_api_token.ci.token
  sensitive = true
}

output "main_branch" {
  value = data.monkeyci_repo.app.main_branch
}
