"""What the runner and the gateway share: settings, statuses, the payload, channels, row queries."""
