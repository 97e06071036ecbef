"""Webhooks out: subscriptions per portal, events written in the movement's transaction,
signed deliveries (Standard Webhooks), retries for a day, a log, replay, and a pause for
a receiver that keeps failing. See docs/webhooks.md."""
