# A tiny example for terraform-provider-monkeyci; see "Terraform" in README.md.
# Run with MONKEYCI_ENDPOINT and MONKEYCI_TOKEN set, and a CLI config with dev_overrides.

terraform {
  required_providers {
    monkeyci = { source = "monkeyci/monkeyci" }
  }
}

# endpoint and token default to $MONKEYCI_ENDPOINT and $MONKEYCI_TOKEN.
provider "monkeyci" {}

resource "monkeyci_org" "acme" {
  name = "Acme"
  slug = "acme" # changing the slug replaces the org
}

data "monkeyci_org" "acme" {
  slug = monkeyci_org.acme.slug
}

output "acme_id" {
  value = data.monkeyci_org.acme.id
}
