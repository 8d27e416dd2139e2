"""Root conftest: every test in the repository can ask for the real broker and database."""

pytest_plugins = ["apev_stack.testing"]
