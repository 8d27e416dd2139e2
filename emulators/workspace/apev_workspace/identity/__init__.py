"""Identity: users, groups, service principals (SCIM) and tokens; resolves each request to a principal."""
