"""The demo application: a tenants database, one SQLite database per tenant (users, outbox), a mailer."""
