"""From alarm to incident: routing, correlation, the incident workflow, SLA lights, notifications."""
