"""The demo application: a tenants database and a mailer service."""
