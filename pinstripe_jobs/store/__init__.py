"""The state store: run history, locks (leases), claims, ticks, tenant slots, invocations and their reads."""
