"""Secret scopes, secrets and ACLs, enforced for every caller (including tasks' run-as principals)."""
